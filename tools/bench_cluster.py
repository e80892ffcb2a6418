#!/usr/bin/env python3
"""Ballista's overhead against one node, on the same machine (issue 15).

    python3 tools/bench_cluster.py --bin $CARGO_TARGET_DIR/release/actlog \
        --gen $CARGO_TARGET_DIR/release/actlog-gen [--events 1000000] [--rounds 3]

Generates a ledger, archives it (`serve --archive file:///...`), then times
each query three ways over the same archived seqs:
- `actlog sql --url` against the server that archived it, warm, on one
  node (its segments and RocksDB);
- `actlog sql --cluster` on a scheduler and two executors over the archive;
- DuckDB over the archive's Parquet files, as a peer that reads the same files.
Each answer must equal one node's. Prints one JSON line with the medians
and the ratios cluster / one node. Nothing is asserted on time.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from benchlib import free_port, metric, served_url

RANGE = 65_536
QUERIES = {
    "count": "SELECT count(*) FROM events",
    "group_by": "SELECT pdp_id, effect, count(*) AS n FROM events GROUP BY pdp_id, effect ORDER BY pdp_id, effect",
    "join": "SELECT d.effect, o.outcome_status, count(*) AS n FROM events o JOIN events d "
            "ON o.decision_event_id = d.event_id WHERE o.event_type = 'authz.outcome' GROUP BY 1, 2 ORDER BY 1, 2",
}






def started(cmd, marker):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, ACTLOG_LOG="warn"))
    for line in p.stderr:
        if marker in line:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, line.split(marker, 1)[1].strip()
    raise SystemExit(f"{cmd[1:3]} did not start")


def timed(cmd):
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{cmd}: {out.stderr}")
    return time.monotonic() - t, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--gen", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="actlog-cluster-bench-")
    procs = []
    try:
        data, archive = os.path.join(tmp, "data"), os.path.join(tmp, "archive")
        subprocess.run([a.gen, "--data", data, "--events", str(a.events)], check=True, capture_output=True)
        admin = subprocess.run([a.bin, "--data", data, "tokens", "create", "--role", "admin"], check=True,
                               capture_output=True, text=True).stdout.strip()
        srv = subprocess.Popen([a.bin, "--data", data, "serve", "--listen", "127.0.0.1:0",
                                "--archive", "file://" + archive], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = served_url(srv)
        threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
        want = (a.events // RANGE) * RANGE
        while (end := int(metric(url, admin, "actlog_archive_end_seq"))) < want:
            time.sleep(1)
        procs.append(srv)  # kept warm: the one-node side asks it (`actlog sql --url`)

        sched, addr = started([a.bin, "cluster", "scheduler", "--listen", "127.0.0.1:0"], "cluster scheduler on ")
        procs.append(sched)
        for _ in range(2):
            work = tempfile.mkdtemp(dir=tmp)
            e, _ = started([a.bin, "cluster", "executor", "--scheduler", addr, "--listen",
                            f"127.0.0.1:{free_port()}", "--grpc-port", str(free_port()), "--work-dir", work,
                            "--slots", "1"], "cluster executor on ")
            procs.append(e)
        results = {}
        for name, q in QUERIES.items():
            one_q = f"WITH events AS (SELECT * FROM events WHERE seq < {end}) {q}"
            one_cmd = [a.bin, "sql", "--url", url, "--token", admin, one_q, "--format", "csv"]
            cl_cmd = [a.bin, "sql", "--cluster", addr, "--archive", "file://" + archive, q, "--format", "csv"]
            duck = ("import duckdb,sys; con=duckdb.connect(); con.execute(\"CREATE VIEW events AS SELECT * FROM "
                    f"read_parquet('{archive}/events/*/*.parquet', hive_partitioning=true)\"); "
                    "print(con.execute(sys.argv[1]).fetchall())")
            one, cluster, peer = [], [], []
            for _ in range(a.rounds):
                t1, o1 = timed(one_cmd)
                t2, o2 = timed(cl_cmd)
                if o1 != o2:
                    raise SystemExit(f"{name}: the cluster's answer differs from one node's")
                one.append(t1)
                cluster.append(t2)
                t3, _ = timed(["python3", "-c", duck, q])
                peer.append(t3)
            results[name] = {
                "one_node_s": round(statistics.median(one), 3),
                "cluster_s": round(statistics.median(cluster), 3),
                "cluster_over_one_node": round(statistics.median(cluster) / statistics.median(one), 2),
                "duckdb_s": round(statistics.median(peer), 3),
            }
        print(json.dumps({"events": end, "executors": 2, "slots_each": 1, "rounds": a.rounds, "queries": results}))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
