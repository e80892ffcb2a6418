#!/usr/bin/env python3
"""Tile reads over HTTP on a large ledger (issue 13: p50 under 1 ms at 10^7).

Serves DATA (for example the 10,000,000-event ledger of tools/bench_sql.sh)
with `--public-tlog`, then times, over one keep-alive connection, N random
requests of each kind: `GET /healthz` (the floor: an HTTP round trip that
reads nothing), full level-0 and level-1 hash tiles, entry bundles (as sent,
and gzip).

    python3 tools/bench_tlog.py --bin target/release/actlog --data DIR/data [--n 1000]

Prints one JSON line.
"""
import argparse
import gzip
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.parse


def index(n):
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--public-tlog"],
                           env=dict(os.environ, ACTLOG_DATA=args.data),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in srv.stderr:
            if " on http://" in line:
                url = line.strip().split(" on ")[1]
                break
        u = urllib.parse.urlparse(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

        def get(path, headers=None):
            t = time.perf_counter()
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            body = r.read()
            dt = (time.perf_counter() - t) * 1000
            if r.status != 200:
                sys.exit(f"bench_tlog: GET {path}: {r.status} {body[:200]!r}")
            return dt, body, r

        _, cp, _ = get("/tlog/checkpoint")
        size = int(cp.decode().split("\n")[1])
        rng = random.Random(1)
        full0, full1 = size // 256, size // 65536
        kinds = {
            "healthz": lambda: "/healthz",
            "checkpoint": lambda: "/tlog/checkpoint",
            "tile_level0": lambda: f"/tlog/tile/0/{index(rng.randrange(full0))}",
            "tile_level1": lambda: f"/tlog/tile/1/{index(rng.randrange(full1))}" if full1 else None,
            "tile_level0_go_path": lambda: f"/tlog/tile/8/0/{index(rng.randrange(full0))}",
            "entry_bundle": lambda: f"/tlog/tile/entries/{index(rng.randrange(full0))}",
        }
        out = {"tree_size": size, "n": args.n}
        # Warm the connection and the process once.
        for _ in range(50):
            get("/healthz")
        for name, path in kinds.items():
            if path() is None:
                continue
            xs = []
            nbytes = 0
            for _ in range(args.n):
                dt, body, _ = get(path())
                xs.append(dt)
                nbytes += len(body)
            xs.sort()
            out[name] = {"p50_ms": round(statistics.median(xs), 3), "p99_ms": round(xs[int(0.99 * len(xs))], 3),
                         "bytes": nbytes // args.n}
        xs, raw, packed = [], 0, 0
        for _ in range(args.n):
            dt, body, r = get(f"/tlog/tile/entries/{index(rng.randrange(full0))}", {"Accept-Encoding": "gzip"})
            xs.append(dt)
            packed += len(body)
            raw += len(gzip.decompress(body)) if r.getheader("Content-Encoding") == "gzip" else len(body)
        xs.sort()
        out["entry_bundle_gzip"] = {"p50_ms": round(statistics.median(xs), 3), "p99_ms": round(xs[int(0.99 * len(xs))], 3),
                                    "bytes": packed // args.n, "ratio": round(packed / raw, 3)}
        out["tile_level0_over_healthz_p50"] = round(out["tile_level0"]["p50_ms"] / out["healthz"]["p50_ms"], 2)
        print(json.dumps(out))
    finally:
        srv.kill()
        srv.wait()


if __name__ == "__main__":
    main()
