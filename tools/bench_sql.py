"""Times issue 4's query targets against a running `actlog serve` and DuckDB.

Driven by tools/bench_sql.sh; prints Markdown rows for docs/benchmarks.md.
Every figure is measured in this run, on this machine, with the same files.
"""
import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request

import duckdb

from benchlib import du

ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--admin-token", required=True)
ap.add_argument("--gen", required=True)
ap.add_argument("--seal-seconds", type=float, default=0.0)
ap.add_argument("--chains", type=int, default=300)
args = ap.parse_args()


env = dict(os.environ, ACTLOG_DATA=args.data)
token = subprocess.run([args.bin, "tokens", "create", "--role", "query", "--name", f"bench-{int(time.time())}"],
                       env=env, capture_output=True, text=True, check=True).stdout.strip()
auditor = subprocess.run([args.bin, "tokens", "create", "--role", "auditor", "--name", f"bench-auditor-{int(time.time())}"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--sql-rows-max", "1000000"],
                       env=env, stderr=subprocess.PIPE, text=True)
url = None
for line in srv.stderr:
    if " on http://" in line:
        url = line.strip().split(" on ")[1]
        break
assert url, "server did not start"


def post(sql):
    req = urllib.request.Request(url + "/v1/sql", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def get(path, as_token=None):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + (as_token or token)})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def timed(f, runs):
    out = []
    for _ in range(runs):
        s = time.perf_counter()
        f()
        out.append(time.perf_counter() - s)
    return out


try:
    n = post("SELECT count(*) FROM events")["rows"][0][0]
    # Chain reconstruction: random decisions and outcomes, by event_id and by task_id.
    sample = post(f"SELECT event_id, task_id FROM events WHERE event_type IN ('authz.decision','authz.outcome') "
                  f"AND task_id IS NOT NULL AND seq % 997 = 13 LIMIT {2 * args.chains}")["rows"]
    random.Random(1).shuffle(sample)
    # Warm the server (RocksDB's block cache, index blocks) with other ids
    # than the measured ones, as a server that has been running would be.
    warm, sample = sample[:args.chains], sample[args.chains:]
    for eid, t in warm:
        get("/v1/chains/" + eid)
        post(f"SELECT seq FROM events WHERE task_id = '{t}'")
    by_id = [timed(lambda: get("/v1/chains/" + eid), 1)[0] for eid, _ in sample]
    by_task = [timed(lambda: post(f"SELECT seq, event_type, effect, outcome_status FROM events WHERE task_id = '{t}'"), 1)[0]
               for _, t in sample]

    # Inclusion proofs for random seqs at the full tree size, over HTTP
    # (so the figure includes the request, not only the O(log n) reads).
    rng = random.Random(2)
    for _ in range(100):
        get(f"/v1/proofs/inclusion?seq={rng.randrange(n)}", auditor)
    proofs = [timed(lambda: get(f"/v1/proofs/inclusion?seq={rng.randrange(n)}", auditor), 1)[0] for _ in range(1000)]

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000

    lo, hi = post("SELECT min(event_time), max(event_time) FROM events WHERE seq > 100")["rows"][0]
    day = post("SELECT CAST(date_trunc('day', min(event_time)) + INTERVAL '10 days' AS VARCHAR) FROM events WHERE seq > 100")["rows"][0][0]
    day_sql = (f"SELECT actor_id, effect, count(*) FROM events WHERE event_time >= TIMESTAMP '{day}' "
               f"AND event_time < TIMESTAMP '{day}' + INTERVAL '1 day' GROUP BY actor_id, effect")
    day_rows = post("SELECT count(*) FROM events WHERE event_time >= TIMESTAMP '%s' AND event_time < TIMESTAMP '%s' + INTERVAL '1 day'" % (day, day))["rows"][0][0]
    window = timed(lambda: post(day_sql), 5)
    scan_sqls = [
        "SELECT tool_name, effect, count(*) FROM events GROUP BY tool_name, effect",
        "SELECT actor_id, count(*) AS denies FROM events WHERE effect = 'deny' GROUP BY actor_id ORDER BY denies DESC LIMIT 10",
    ]
    scan = timed(lambda: [post(q) for q in scan_sqls], 5)

    files = sorted(glob.glob(os.path.join(args.data, "segments", "events-*.parquet")))
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute("CREATE VIEW events AS SELECT * FROM read_parquet(%s)" % json.dumps(files).replace('"', "'"))
    duck = timed(lambda: [con.execute(q).fetchall() for q in scan_sqls], 5)
    duck_day = timed(lambda: con.execute(day_sql).fetchall(), 5)
    sealed = sum(1 for _ in files)

    raw = post("SELECT sum(length(payload) + 1) FROM events")["rows"][0][0]
    db_bytes = du(os.path.join(args.data, "db"))
    seg_bytes = du(os.path.join(args.data, "segments"))
    gen = json.load(open(args.gen))

    med = statistics.median
    print(f"Ledger: {n:,} events (actlog-gen: {gen['events']:,} in {gen['seconds']:.0f} s, {gen['events_per_s']:,.0f}/s through "
          f"the append path); {sealed} sealed segments (sealing took {args.seal_seconds:.0f} s); one day = {day_rows:,} events.")
    print()
    print("| measure | actlog | target | peer (same run) |")
    print("| --- | --- | --- | --- |")
    print(f"| chain by event_id (GET /v1/chains, {len(by_id)} random) | p50 {pct(by_id, .5):.2f} ms, p99 {pct(by_id, .99):.2f} ms | p50 < 5 ms, p99 < 20 ms | |")
    print(f"| chain by task_id (POST /v1/sql, {len(by_task)} random) | p50 {pct(by_task, .5):.2f} ms, p99 {pct(by_task, .99):.2f} ms | p50 < 5 ms, p99 < 20 ms | |")
    print(f"| inclusion proof, random seq of {n:,} (GET /v1/proofs/inclusion, 1000 random) | p50 {pct(proofs, .5):.2f} ms, p99 {pct(proofs, .99):.2f} ms | < 1 ms (issue 2) | |")
    print(f"| one-day window GROUP BY actor_id, effect | {med(window)*1000:.0f} ms (median of 5) | < 300 ms | DuckDB {med(duck_day)*1000:.0f} ms |")
    print(f"| full-scan aggregates (tool_name x effect; top 10 agents by denies) | {med(scan)*1000:.0f} ms (median of 5) | < 2 s, at or below DuckDB | DuckDB {med(duck)*1000:.0f} ms; ratio {med(scan)/med(duck):.2f}x |")
    print(f"| bytes on disk per event | RocksDB {db_bytes/n:.0f} B, segments {seg_bytes/n:.0f} B | reported | raw NDJSON of the events {raw/n:.0f} B |")
finally:
    srv.terminate()
    srv.wait(timeout=120)
