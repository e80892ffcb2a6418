#!/usr/bin/env python3
"""The local disk of a server under --hot-retention, over a long run (issue 15).

Starts `actlog serve --archive file://... --hot-retention H` with small
segments (so ranges are archived, evicted and retired often), drives it with
`actlog loadgen --rate R` for the whole run, and samples every few seconds:
the tree size, the cold floor, and the bytes of `db/` (RocksDB), `segments/`
and the archive. Then fits, by least squares, how many bytes each of them
grows per event appended:

- in the first phase, before the cold floor moves (everything is hot);
- in the last half of the run, once the floor follows the horizon.

A disk bounded by the horizon grows by nothing per event in the second
phase, while the archive grows by its bytes per event.

    python3 tools/bench_bounded.py --bin target/release/actlog --minutes 10 --rate 2000

Prints one JSON line. RocksDB's bytes move in steps (memtable flushes and
compactions), so short runs are noisy; the slopes, not single samples, are
the figures.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import du, metric, served_url


def slope(points):
    """Least-squares bytes per event of (events, bytes) points."""
    n = len(points)
    if n < 3:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=2000, help="events per second offered by loadgen")
    ap.add_argument("--segment-events", type=int, default=8192)
    ap.add_argument("--hot-retention", default="30s")
    ap.add_argument("--sample-s", type=float, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-bounded-", dir="/var/tmp")
    data, archive = os.path.join(work, "data"), os.path.join(work, "archive")
    try:
        token = subprocess.run([args.bin, "--data", data, "init", "--origin", "bench.actlog.test"], check=True,
                               capture_output=True, text=True).stdout.strip()
        srv = subprocess.Popen([args.bin, "--data", data, "serve", "--listen", "127.0.0.1:0",
                                "--archive", f"file://{archive}", "--hot-retention", args.hot_retention,
                                "--segment-events", str(args.segment_events), "--sql-time-ms", "2000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            url = served_url(srv)
            log = []
            threading.Thread(target=lambda: log.extend(srv.stderr), daemon=True).start()
            seconds = int(args.minutes * 60)
            load = subprocess.Popen([args.bin, "loadgen", "--url", url, "--admin-token", token, "--pdps", "16",
                                     "--batch", "200", "--concurrency", "2", "--rate", str(args.rate),
                                     "--duration", str(seconds), "--json"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            samples = []
            t0 = time.monotonic()
            while load.poll() is None:
                time.sleep(args.sample_s)
                if metric(url, token, "actlog_archive_failures_total") > 0:
                    raise SystemExit("an archiver turn failed:\n" + "".join(l for l in log if "ERROR" in l))
                samples.append({
                    "t": round(time.monotonic() - t0, 1),
                    "tree_size": int(metric(url, token, "actlog_tree_size")),
                    "cold_floor": int(metric(url, token, "actlog_cold_floor_seq")),
                    "db": du(os.path.join(data, "db")),
                    "segments": du(os.path.join(data, "segments")),
                    "archive": du(archive),
                })
            loadgen = json.loads(load.stdout.read().strip().splitlines()[-1])
        finally:
            srv.terminate()
            srv.wait()
        hot = [s for s in samples if s["cold_floor"] == 0]
        moving = [s for s in samples if s["cold_floor"] > 0]
        late = moving[len(moving) // 2:]

        def slopes(points):
            return {k: slope([(s["tree_size"], s[k]) for s in points]) for k in ("db", "segments", "archive")}

        last = samples[-1]
        print(json.dumps({
            "minutes": args.minutes,
            "rate_offered": args.rate,
            "loadgen": loadgen,
            "segment_events": args.segment_events,
            "hot_retention": args.hot_retention,
            "samples": len(samples),
            "final": last,
            "hot_events_at_end": last["tree_size"] - last["cold_floor"],
            "bytes_per_event_all_hot": slopes(hot),
            "bytes_per_event_late_retention": slopes(late),
            "late_samples": len(late),
            "series": [[s["t"], s["tree_size"], s["cold_floor"], s["db"], s["segments"], s["archive"]]
                       for s in samples],
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
