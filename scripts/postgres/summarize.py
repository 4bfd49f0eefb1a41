#!/usr/bin/env python3
"""Latency percentiles from pgbench --log files, and the JSON result.

Usage: summarize.py --out FILE --tps X --clients N --seconds S
                    --transactions T --version V LOGFILE...

Each pgbench log line (no --aggregate-interval) is
  client_id transaction_no latency_us script_no epoch_s epoch_us
Percentiles are nearest-rank over every logged transaction.
"""
import argparse
import json
import math
import os
import sys


def percentile(sorted_values, p):
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tps", type=float, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--transactions", type=int, required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args()

    latencies_us = []
    bad = 0
    for path in a.logs:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 6:
                    continue
                try:
                    latencies_us.append(int(fields[2]))
                except ValueError:  # "failed" / "skipped" markers
                    bad += 1
    if bad:
        sys.exit(f"summarize: {bad} failed or skipped transactions in the pgbench log")
    if not latencies_us:
        sys.exit("summarize: no transactions in the pgbench log")
    if len(latencies_us) != a.transactions:
        sys.exit(
            f"summarize: the log has {len(latencies_us)} transactions, "
            f"pgbench reported {a.transactions}"
        )
    latencies_us.sort()
    ms = lambda us: round(us / 1000.0, 3)
    result = {
        "tps": round(a.tps, 1),
        "clients": a.clients,
        "threads": a.threads,
        "seconds": a.seconds,
        "transactions": a.transactions,
        "p50_ms": ms(percentile(latencies_us, 50)),
        "p99_ms": ms(percentile(latencies_us, 99)),
        "p999_ms": ms(percentile(latencies_us, 99.9)),
        "max_ms": ms(latencies_us[-1]),
        "mean_ms": ms(sum(latencies_us) / len(latencies_us)),
        "postgres_version": a.version,
        "protocol": a.mode,
        "synchronous_commit": "on",
        "fsync": "on",
        "full_page_writes": "on",
        "work_per_transaction": "1 request id + 1 entry + 3 postings + 3 balance updates",
    }
    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(tmp, a.out)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
