#!/usr/bin/env python3
"""Throughput of the Python producer SDK: signs and sends N events from one
process in batches, and prints JSON
{"events", "seconds", "events_per_s", "sign_seconds", ...}.

    python3 clients/python/bench.py                 # starts its own actlog serve (ACTLOG_BIN)
    python3 clients/python/bench.py --n 20000 --url http://127.0.0.1:7340 --token TOKEN \\
        --seed-file pdp.seed --key-name pdp-a-key --pdp pdp-a

`seconds` is the wall time from the first record() to the end of flush(),
all receipts back. The other fields say where it goes:
  sign_seconds     serializing (json) and signing (ed25519) every event, timed alone first
  json_seconds     the JSON part of that
  record_seconds   time the producing thread spent in record_many() during the run
                   (json + sign + base64 + spool writes, and back-pressure waits)
  http_seconds     time the sender thread waited for the server's answers
  server_events_per_s   events / http_seconds: what the server sustains per connection
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "src"), os.path.join(HERE, "tests")]

from actlog_client import Client, Signer, public_key_b64  # noqa: E402


def make_events(n, pdp, run):
    from serverutil import decision
    return [decision(f"bench-{run}-{i:08d}", pdp=pdp,
                     correlation={"session_id": f"s{i % 5000}", "task_id": f"t{i // 3}"})
            for i in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--url")
    ap.add_argument("--token", help="ingest token (with --url)")
    ap.add_argument("--seed-file", help="32-byte ed25519 seed registered for --pdp (with --url)")
    ap.add_argument("--key-name", default="bench-key")
    ap.add_argument("--pdp", default="bench-pdp")
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--no-spool", action="store_true", help="no spool directory (no fsync per batch)")
    args = ap.parse_args()

    server = None
    if args.url:
        if not (args.token and args.seed_file):
            ap.error("--url needs --token and --seed-file")
        url, token = args.url, args.token
        seed = open(args.seed_file, "rb").read()
    else:
        from serverutil import ActlogServer
        server = ActlogServer()
        seed = os.urandom(32)
        server.add_key(args.key_name, public_key_b64(seed), args.pdp)
        url, token = server.url, server.ingest_token()
    run = f"{int(time.time())}-{os.getpid()}"
    try:
        events = make_events(args.n, args.pdp, run)

        # Client-side CPU alone: serialize and sign every event once.
        signer = Signer(seed, args.key_name)
        t = time.perf_counter()
        bodies = [signer.serialize(e)[0] for e in events]
        json_s = time.perf_counter() - t
        for b in bodies:
            signer.envelope_for(b)
        sign_s = time.perf_counter() - t
        del bodies

        with tempfile.TemporaryDirectory(prefix="actlog-bench-spool-") as spool:
            c = Client(url, token=token, key=seed, key_name=args.key_name, batch_size=args.batch,
                       spool_dir=None if args.no_spool else spool, gzip=args.gzip, linger_ms=None,
                       keep_receipts=True)
            record_s = 0.0
            t0 = time.perf_counter()
            for i in range(0, len(events), args.batch):
                t = time.perf_counter()
                c.record_many(events[i:i + args.batch])
                record_s += time.perf_counter() - t
            receipts = c.flush()
            seconds = time.perf_counter() - t0
            stats = c.stats()
            c.close()
        assert len(receipts) == args.n and not any(r.duplicate for r in receipts)
        out = {
            "events": args.n,
            "seconds": round(seconds, 3),
            "events_per_s": round(args.n / seconds),
            "sign_seconds": round(sign_s, 3),
            "json_seconds": round(json_s, 3),
            "record_seconds": round(record_s, 3),
            "http_seconds": round(stats["http_seconds"], 3),
            "server_events_per_s": round(args.n / stats["http_seconds"]) if stats["http_seconds"] else None,
            "requests": stats["requests"],
            "retries": stats["retries"],
            "batch": args.batch,
            "spool": not args.no_spool,
            "gzip": args.gzip,
        }
        print(json.dumps(out))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
