#!/usr/bin/env python3
"""The trial balance of a postings export, worked out without the ledger.

Reads a POSTINGS export of `mfi-ledger export postings` (CSV with its header
row, or JSON lines; told apart by the first character) from FILE or standard
input, adds each general-ledger line's debits and credits, and prints the
trial balance as JSON: one row per line with activity (gl_code, gl_name,
line, debits, credits, debit_balance, credit_balance), in code order, and the
totals. Python's standard library only; amounts are decimal.Decimal, parsed
from the export's exact strings, and any arithmetic that would round is an
error (never a float).

With --opening TB.json (`mfi-ledger trial-balance --json`, e.g. at the end
of the year before the export's first day), the lines start from that
trial balance's debits and credits: opening balances plus the period's
postings give the closing trial balance, to compare with the ledger's.

Exit status: 0 when total debits equal total credits, 1 when they do not
(the JSON is printed all the same), 2 for input that is not a postings
export.
"""

import argparse
import csv
import decimal
import io
import itertools
import json
import re
import sys

# Exact arithmetic: far more digits than any amount, and rounding is an error.
EXACT = decimal.Context(
    prec=200,
    traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation, decimal.Overflow],
)
decimal.setcontext(EXACT)

AMOUNT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
COLUMNS = ("sequence", "effective_date", "branch_id", "account", "line", "gl_code",
           "gl_name", "side", "amount", "currency")


class NotAnExport(Exception):
    """Input that is not a postings export."""


def amount(text, where):
    """An exact, non-negative amount from its text."""
    if not isinstance(text, str) or not AMOUNT.match(text):
        raise NotAnExport(f"{where}: amount {text!r} is not a plain decimal string")
    return decimal.Decimal(text)


def no_float(text):
    """Amounts are strings in an export; a float is not one."""
    raise NotAnExport(f"a float ({text}) where an export has strings")


def rows_of(stream):
    """The export's rows as (line number, dict), from CSV or JSON lines,
    read a line at a time."""
    first = stream.readline()
    if not first:
        return  # JSON lines with no row: an empty file
    lines = itertools.chain([first], stream)
    if first.startswith("{"):
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_float=no_float)
            except json.JSONDecodeError as error:
                raise NotAnExport(f"line {number}: not JSON: {error}") from None
            yield number, row
    else:
        reader = csv.DictReader(lines)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise NotAnExport(f"the CSV header lacks {', '.join(missing)}")
        for row in reader:
            yield reader.line_num, row


def plain(value):
    """A decimal as plain text, no exponent, no trailing fraction zeros."""
    value = value.normalize()
    text = format(value, "f")
    return "0" if text in ("-0", "0") else text


def opening_lines(path):
    """Debits and credits by (gl_code, line) of a trial balance's JSON."""
    with open(path, encoding="utf-8") as file:
        trial = json.load(file)
    lines = {}
    for number, row in enumerate(trial.get("rows", []), start=1):
        where = f"{path}: row {number}"
        key = (row["gl_code"], row["line"])
        debits = amount(row["debits"]["amount"], where)
        credits = amount(row["credits"]["amount"], where)
        lines[key] = {"gl_name": row["gl_name"], "debits": debits, "credits": credits}
    return lines


def trial_balance(rows, opening):
    """The trial balance of the rows, on top of the opening lines."""
    lines = {key: dict(value) for key, value in opening.items()}
    currencies = set()
    postings = 0
    for number, row in rows:
        where = f"row {number}"
        if not isinstance(row, dict) or any(c not in row for c in COLUMNS):
            raise NotAnExport(f"{where}: not a posting (columns {', '.join(COLUMNS)})")
        value = amount(row["amount"], where)
        currencies.add(row["currency"])
        if len(currencies) > 1:
            raise NotAnExport(f"{where}: more than one currency ({', '.join(sorted(currencies))})"
                              "; export one branch at a time")
        key = (row["gl_code"], row["line"])
        line = lines.setdefault(key, {"gl_name": row["gl_name"],
                                      "debits": decimal.Decimal(0),
                                      "credits": decimal.Decimal(0)})
        if row["side"] == "debit":
            line["debits"] += value
        elif row["side"] == "credit":
            line["credits"] += value
        else:
            raise NotAnExport(f"{where}: side {row['side']!r} is neither debit nor credit")
        postings += 1
    out = []
    totals = {"debits": decimal.Decimal(0), "credits": decimal.Decimal(0),
              "debit_balance": decimal.Decimal(0), "credit_balance": decimal.Decimal(0)}
    for (gl_code, line_key), line in sorted(lines.items()):
        if line["debits"] == 0 and line["credits"] == 0:
            continue
        net = line["debits"] - line["credits"]
        figures = {
            "debits": line["debits"],
            "credits": line["credits"],
            "debit_balance": net if net > 0 else decimal.Decimal(0),
            "credit_balance": -net if net < 0 else decimal.Decimal(0),
        }
        for name, value in figures.items():
            totals[name] += value
        out.append({"gl_code": gl_code, "gl_name": line["gl_name"], "line": line_key,
                    **{name: plain(value) for name, value in figures.items()}})
    result = {
        "currency": next(iter(currencies), ""),
        "postings": postings,
        "rows": out,
        **{f"total_{name}": plain(value) for name, value in totals.items()},
    }
    balanced = totals["debits"] == totals["credits"] \
        and totals["debit_balance"] == totals["credit_balance"]
    return result, balanced


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", nargs="?", default="-",
                        help="the postings export (CSV or JSON lines); - for standard input")
    parser.add_argument("--opening", metavar="TB.json",
                        help="a trial balance (mfi-ledger trial-balance --json) to start from")
    args = parser.parse_args()
    try:
        opening = opening_lines(args.opening) if args.opening else {}
        if args.export == "-":
            stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="")
            result, balanced = trial_balance(rows_of(stream), opening)
        else:
            with open(args.export, encoding="utf-8", newline="") as stream:
                result, balanced = trial_balance(rows_of(stream), opening)
    except (NotAnExport, KeyError, decimal.DecimalException) as error:
        print(f"trial-balance-from-export: {error}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    if not balanced:
        print("trial-balance-from-export: debits and credits do not balance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
