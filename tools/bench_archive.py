#!/usr/bin/env python3
"""Archive upload rate and archive bytes per event (issue 15).

Serves DATA with `--archive URL` (a fresh local directory, or a fresh
bucket on a moto S3 server started here with --s3), waits until RANGES
ranges of 65,536 events are archived, and reports:
- the archiver's rate in events/s (time from its first to its last archived
  range, so start-up is left out), against the issue's 40,000 events/s;
- the archive's bytes per event, by kind (data Parquet, leaves and
  envelopes, tiles, manifests and records), against RocksDB's bytes per
  event in the same data directory.

    python3 tools/bench_archive.py --bin target/release/actlog --data DIR/data \
        --admin-token "$(cat DIR/admin.token)" [--ranges 16] [--s3]

The data directory must hold a ledger of at least RANGES * 65,536 events
(for example `bash tools/bench_sql.sh 10000000 DIR`). Prints one JSON line.
"""
import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import du, free_port, metric, served_url

RANGE = 65_536






def kind_of(key):
    if key.startswith(("events/", "delegation_hops/")):
        return "data_parquet"
    if key.endswith("/leaves.parquet"):
        return "leaves_and_envelopes"
    if key.startswith("tile/"):
        return "tiles"
    return "manifests_and_records"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--ranges", type=int, default=16)
    ap.add_argument("--s3", action="store_true", help="archive to a moto S3 server on loopback")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-archive-")
    env = dict(os.environ, ACTLOG_DATA=args.data)
    moto = None
    extra = []
    if args.s3:
        port = free_port()
        moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                          aws_secret_access_key="bench-secret", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        url = "s3://bench/archive"
        extra = ["--archive-endpoint", endpoint]
    else:
        url = f"file://{work}/archive"
    srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--archive", url, *extra],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = served_url(srv)
        want = args.ranges * RANGE
        seen = []  # (time, end_seq) at each change
        last = -1
        while True:
            end = int(metric(base, args.admin_token, "actlog_archive_end_seq"))
            if metric(base, args.admin_token, "actlog_archive_failures_total") > 0:
                raise SystemExit("an archiver turn failed; see the server log")
            if end != last:
                seen.append((time.monotonic(), end))
                last = end
            if end >= want:
                break
            time.sleep(0.05)
        tree_size = int(metric(base, args.admin_token, "actlog_tree_size"))
    finally:
        srv.terminate()
        srv.wait()
    (t0, e0), (t1, e1) = seen[1], seen[-1]  # from the first archived range on
    rate = (e1 - e0) / (t1 - t0) if t1 > t0 else float("nan")
    # Count what the range records list (the archiver may have begun the
    # next range before it stopped; unlisted objects are not the archive's).
    def read(key):
        if args.s3:
            return s3.get_object(Bucket="bench", Key="archive/" + key)["Body"].read()
        with open(os.path.join(work, "archive", key), "rb") as f:
            return f.read()

    def keys(prefix):
        if args.s3:
            out = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="archive/" + prefix):
                out += [o["Key"][len("archive/"):] for o in page.get("Contents", [])]
            return out
        root = os.path.join(work, "archive")
        return [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(os.path.join(root, prefix)) for f in fs]

    by_kind = {}
    e1 = 0
    for key in sorted(k for k in keys("ranges/") if k.endswith("/range.dsse.json")):
        raw = read(key)
        record = json.loads(base64.b64decode(json.loads(raw)["payload"]))
        e1 = max(e1, record["end_seq"])
        by_kind["manifests_and_records"] = by_kind.get("manifests_and_records", 0) + len(raw)
        for o in record["objects"]:
            k = kind_of(o["key"])
            by_kind[k] = by_kind.get(k, 0) + o["bytes"]
    if moto:
        moto.terminate()
    archived = e1
    db = du(os.path.join(args.data, "db"))
    out = {
        "store": "s3 (moto, loopback)" if args.s3 else "local files",
        "ranges": archived // RANGE,
        "events_archived": archived,
        "archiver_events_per_s": round(rate),
        "vs_40000_per_s": round(rate / 40000, 3),
        "archive_bytes_per_event": round(sum(by_kind.values()) / archived, 1),
        "by_kind_bytes_per_event": {k: round(v / archived, 1) for k, v in sorted(by_kind.items())},
        "rocksdb_bytes_per_event": round(db / tree_size, 1),
    }
    print(json.dumps(out))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
