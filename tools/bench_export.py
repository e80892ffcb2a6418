#!/usr/bin/env python3
"""Times `actlog export` and `actlog verify --bundle` on a window of a ledger,
against DuckDB writing the same rows as date-partitioned Parquet from the
same segment files (the peer: the cost of the rows alone), in the same run.

  python3 tools/bench_export.py --bin target/release/actlog --data DIR \
      --from 2026-01-10 --to 2026-01-11 [--rounds 3] [--work /var/tmp/x]

The ledger must not be held by a server (the export seals nothing then).
Prints a Markdown table for docs/benchmarks.md.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import duckdb

from benchlib import du


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--from", dest="frm", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="actlog-bench-export.", dir="/var/tmp")
    vk = json.loads(subprocess.check_output([a.bin, "--data", a.data, "info", "--json"]))["verifier_key"]
    seg = os.path.join(a.data, "segments", "events-*.parquet")
    frm = a.frm if "T" in a.frm else a.frm + "T00:00:00Z"
    to = a.to if "T" in a.to else a.to + "T00:00:00Z"
    rows = {"actlog export": [], "DuckDB COPY (peer)": [], "actlog verify --bundle": []}
    meta = {}
    for r in range(a.rounds):
        out = os.path.join(work, f"bundle-{r}")
        shutil.rmtree(out, ignore_errors=True)
        s = time.monotonic()
        res = subprocess.run(
            [a.bin, "--data", a.data, "export", "--out", out, "--from", a.frm, "--to", a.to, "--json"],
            check=True, capture_output=True, text=True,
        )
        rows["actlog export"].append(time.monotonic() - s)
        meta = json.loads(res.stdout)
        peer = os.path.join(work, f"duck-{r}")
        shutil.rmtree(peer, ignore_errors=True)
        con = duckdb.connect()
        s = time.monotonic()
        con.execute(
            f"COPY (SELECT *, strftime(event_time, '%Y-%m-%d') AS date FROM read_parquet('{seg}') "
            f"WHERE event_time >= TIMESTAMPTZ '{frm}' AND event_time < TIMESTAMPTZ '{to}') "
            f"TO '{peer}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)"
        )
        rows["DuckDB COPY (peer)"].append(time.monotonic() - s)
        peer_rows = con.execute(f"SELECT count(*) FROM read_parquet('{peer}/*/*.parquet')").fetchone()[0]
        con.close()
        s = time.monotonic()
        subprocess.run([a.bin, "verify", "--bundle", out, "--key", vk], check=True, capture_output=True)
        rows["actlog verify --bundle"].append(time.monotonic() - s)
        if peer_rows != meta["events"]:
            raise SystemExit(f"DuckDB wrote {peer_rows} rows, actlog {meta['events']}")
        if r < a.rounds - 1:
            shutil.rmtree(peer, ignore_errors=True)
    events = meta["events"]
    med = {k: sorted(v)[len(v) // 2] for k, v in rows.items()}
    print(f"Window {a.frm} to {a.to}: {events:,} events, {meta['leaves']:,} leaves, "
          f"bundle {du(out) / 1e6:,.0f} MB (leaves.parquet {os.path.getsize(os.path.join(out, 'leaves.parquet')) / 1e6:,.0f} MB), "
          f"DuckDB's rows {du(peer) / 1e6:,.0f} MB; median of {a.rounds} rounds.\n")
    print("| step | seconds (each round) | median | events/s | ratio to the peer |")
    print("| --- | --- | ---: | ---: | ---: |")
    for k, v in rows.items():
        ratio = "" if k.startswith("DuckDB") else f"{med[k] / med['DuckDB COPY (peer)']:.2f}x"
        print(f"| {k} | {', '.join(f'{x:.2f}' for x in v)} | {med[k]:.2f} | {events / med[k]:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
