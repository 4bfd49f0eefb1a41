#!/usr/bin/env python3
"""Writes BENCHMARKS.md and docs/benchmarks.svg from the results that
scripts/bench-all leaves in target/bench and target/criterion."""

import json
import math
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "target" / "bench"
CRITERION = ROOT / "target" / "criterion"
BATCHES = [1, 10, 100, 1000]
KINDS = ["repayment", "deposit", "disbursement", "baseline_file_fdatasync", "baseline_sled_fdatasync"]


def load(name):
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


def criterion_seconds(*parts):
    path = CRITERION.joinpath(*parts, "new", "estimates.json")
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e9


def per_second(batch, seconds):
    return batch / seconds if seconds else None


def fmt_rate(value):
    if value is None:
        return "n/a"
    return f"{value:,.0f}"


def fmt_ratio(a, b):
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def fmt_ms(value):
    return "n/a" if value is None else f"{value:.2f}"


def write_rates():
    rates = {}
    for kind in KINDS:
        for batch in BATCHES:
            rates[(kind, batch)] = per_second(batch, criterion_seconds("durable_writes", kind, str(batch)))
    return rates


def query_micros():
    table = {}
    for query in ["balance", "loan", "branch_totals_year"]:
        for size in [10_000, 100_000, 1_000_000]:
            seconds = criterion_seconds("queries", query, str(size))
            table[(query, size)] = None if seconds is None else seconds * 1e6
    return table


def svg_chart(rates, grpc):
    """Two bar charts on a log scale: durable writes by batch size, and gRPC."""
    width, height, left, top, bottom = 860, 620, 90, 40, 250
    series = [
        ("repayment", "#1f77b4"),
        ("deposit", "#2ca02c"),
        ("disbursement", "#9467bd"),
        ("baseline_file_fdatasync", "#7f7f7f"),
        ("baseline_sled_fdatasync", "#ff7f0e"),
    ]
    values = [v for v in rates.values() if v] + [v for _, v in grpc if v]
    top_value = 10 ** math.ceil(math.log10(max(values))) if values else 1e6
    low_value = 10 ** (math.floor(math.log10(min(values))) - 1) if values else 1
    plot_h = height - top - bottom

    def y_of(value):
        span = math.log10(top_value) - math.log10(low_value)
        return top + plot_h - (math.log10(value) - math.log10(low_value)) / span * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15">Durable commands per second (log scale), same run</text>',
    ]
    exponent = int(math.log10(low_value))
    while 10 ** exponent <= top_value:
        y = y_of(10 ** exponent)
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{10 ** exponent:,}</text>')
        exponent += 1
    group_w = (width - left - 40) / (len(BATCHES) + 1)
    bar_w = group_w / (len(series) + 1)
    for g, batch in enumerate(BATCHES):
        x0 = left + 10 + g * group_w
        for s, (kind, colour) in enumerate(series):
            value = rates.get((kind, batch))
            if not value:
                continue
            y = y_of(value)
            parts.append(
                f'<rect class="point" x="{x0 + s * bar_w:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{top + plot_h - y:.1f}" fill="{colour}"><title>{kind} batch {batch}: {value:,.0f}/s</title></rect>'
            )
        parts.append(f'<text x="{x0 + group_w / 2 - bar_w:.1f}" y="{top + plot_h + 16}">batch {batch}</text>')
    # gRPC group
    x0 = left + 10 + len(BATCHES) * group_w
    grpc_colours = ["#1f77b4", "#17becf", "#bcbd22", "#8c564b", "#d62728"]
    for s, ((label, value), colour) in enumerate(zip(grpc, grpc_colours)):
        if not value:
            continue
        y = y_of(value)
        parts.append(
            f'<rect class="point" x="{x0 + s * bar_w:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{top + plot_h - y:.1f}" fill="{colour}"><title>{label}: {value:,.0f}/s</title></rect>'
        )
    parts.append(f'<text x="{x0:.1f}" y="{top + plot_h + 16}">gRPC, 64 clients</text>')
    legend_y = top + plot_h + 40
    labels = [(k.replace("baseline_", "baseline: ").replace("_", " "), c) for k, c in series]
    labels += [(label, c) for (label, _), c in zip(grpc, grpc_colours)]
    for i, (label, colour) in enumerate(labels):
        y = legend_y + i * 17
        parts.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{left + 18}" y="{y}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def kept_sections(generated, notes_text):
    """The sections of the current BENCHMARKS.md that neither this script nor
    docs/benchmarks-notes.md writes, in their order."""
    current = ROOT / "BENCHMARKS.md"
    if not current.exists():
        return []
    written = {line for line in generated if line.startswith("## ")}
    written |= {line for line in notes_text.splitlines() if line.startswith("## ")}
    kept, section = [], None
    for line in current.read_text().splitlines():
        if line.startswith("## "):
            section = None if line in written or line.startswith("## Over gRPC") or line.startswith("## Recovery and disk") else []
            if section is not None:
                kept.append(section)
        if section is not None:
            section.append(line)
    return [line for section in kept for line in section + [""]]


def main():
    machine = (BENCH / "machine.txt").read_text().strip() if (BENCH / "machine.txt").exists() else "unknown"
    rates = write_rates()
    queries = query_micros()
    recovery = load("recovery.json") or {}
    ledger_unary = load("ledger-unary.json") or {}
    ledger_batch = load("ledger-batch.json") or {}
    half = load("ledger-unary-half-rate.json") or {}
    echo_unary = load("echo-unary.json") or {}
    echo_batch = load("echo-batch.json") or {}
    postgres = load("postgres.json") or {}
    cps = lambda result: result.get("commands_per_second")

    lines = ["# Benchmarks", ""]
    lines += [
        "Every figure below comes from one run of `scripts/bench-all` on the machine",
        "described here, except the sections that give their own command, which",
        "come from their own runs; ratios compare figures measured side by side in",
        "one run.",
        "The machine is shared and noisy, so read the ratios first.",
        "",
        "```",
        machine,
        "```",
        "",
        "Reproduce everything (about 15 minutes): `scripts/bench-all`",
        "",
        "![throughput](docs/benchmarks.svg)",
        "",
        "## Durable writes in process (commands/s)",
        "",
        "`Ledger::submit_many` with `batch` commands per call: each batch is decided,",
        "appended as one journal frame and made durable by one `fdatasync` before any",
        "reply. Baselines use the same encoded entry bytes: a plain file with one",
        "`fdatasync` per batch, and sled `apply_batch` + `flush` + `fdatasync`.",
        "",
        "| batch | repayment | deposit | disbursement | file + fdatasync | sled + fdatasync | repayment ÷ sled |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCHES:
        row = [fmt_rate(rates[(k, batch)]) for k in KINDS]
        ratio = fmt_ratio(rates[("repayment", batch)], rates[("baseline_sled_fdatasync", batch)])
        lines.append(f"| {batch:,} | " + " | ".join(row) + f" | {ratio} |")
    lines += [
        "",
        "## Over gRPC on 127.0.0.1 ({} clients)".format(ledger_unary.get("clients", 64)),
        "",
        "`mfi-ledger load` against `mfi-ledger serve` (repayments and deposits, every",
        "acknowledged command then checked in the journal), against the echo server",
        "(same messages, no ledger work: the RPC ceiling), and PostgreSQL 15 doing the",
        "same double-entry work per repayment (`synchronous_commit = on`).",
        "",
        "| target | commands/s | p50 ms | p99 ms | p99.9 ms | verified |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, result in [
        ("ledger, unary", ledger_unary),
        (f"ledger, SubmitBatch of {ledger_batch.get('batch_size', 100)} (latency per call)", ledger_batch),
        ("ledger, unary at half the unary peak rate", half),
        ("echo, unary", echo_unary),
        (f"echo, SubmitBatch of {echo_batch.get('batch_size', 100)}", echo_batch),
    ]:
        lines.append(
            f"| {label} | {fmt_rate(cps(result))} | {fmt_ms(result.get('p50_ms'))} | {fmt_ms(result.get('p99_ms'))} | "
            f"{fmt_ms(result.get('p999_ms'))} | {result.get('verified', 'n/a')} |"
        )
    lines.append(
        f"| PostgreSQL 15, {postgres.get('clients', 'n/a')} clients | {fmt_rate(postgres.get('tps'))} | "
        f"{fmt_ms(postgres.get('p50_ms'))} | {fmt_ms(postgres.get('p99_ms'))} | {fmt_ms(postgres.get('p999_ms'))} | balances checked |"
    )
    lines += [
        "",
        f"- ledger unary ÷ echo unary: {fmt_ratio(cps(ledger_unary), cps(echo_unary))}",
        f"- ledger batched ÷ echo batched: {fmt_ratio(cps(ledger_batch), cps(echo_batch))}",
        f"- ledger unary ÷ PostgreSQL: {fmt_ratio(cps(ledger_unary), postgres.get('tps'))}",
        "",
        "## Query latency by journal size (µs, in process)",
        "",
        "| query | 10^4 entries | 10^5 entries | 10^6 entries |",
        "|---|---:|---:|---:|",
    ]
    for query, label in [("balance", "two balances"), ("loan", "loan as of a date"), ("branch_totals_year", "branch totals, year and year before")]:
        row = [("n/a" if queries[(query, s)] is None else f"{queries[(query, s)]:.2f}") for s in [10_000, 100_000, 1_000_000]]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## Recovery and disk at {:,} entries".format(recovery.get("entries", 0)),
        "",
        "| figure | value |",
        "|---|---:|",
        f"| restart after a clean stop | {recovery.get('restart_seconds', float('nan')):.2f} s |",
        f"| restart rebuilding the state cache from the journal | {recovery.get('rebuild_seconds', float('nan')):.2f} s |",
        f"| offline verify (re-executes every command) | {fmt_rate(recovery.get('verify_entries_per_second'))} entries/s |",
        f"| disk bytes per entry (journal + sled cache) | {recovery.get('disk_bytes_per_entry', float('nan')):.0f} "
        f"({recovery.get('journal_bytes_per_entry', float('nan')):.0f} + {recovery.get('state_bytes_per_entry', float('nan')):.0f}) |",
        "",
    ]
    notes = ROOT / "docs" / "benchmarks-notes.md"
    notes_text = notes.read_text().strip() if notes.exists() else ""
    # Sections measured by their own runs (their commands are given in them)
    # are kept as they are: a bench-all run does not reproduce them.
    lines += kept_sections(lines, notes_text)
    if notes_text:
        lines += [notes_text, ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    grpc = [
        ("ledger unary", cps(ledger_unary)),
        ("ledger SubmitBatch", cps(ledger_batch)),
        ("echo unary", cps(echo_unary)),
        ("echo SubmitBatch", cps(echo_batch)),
        ("PostgreSQL 15", postgres.get("tps")),
    ]
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.svg").write_text(svg_chart(rates, grpc))


if __name__ == "__main__":
    main()
