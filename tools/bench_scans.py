#!/usr/bin/env python3
"""Times issue 4's two full-scan queries per query, against DuckDB over the
same Parquet files, for one or more actlog binaries in turn (one server at
a time: they share the data directory's lock). DuckDB is timed in the same
rounds as each binary, so each row has its own peer.
    python3 tools/bench_scans.py DATA_DIR BIN [BIN...]   (ROUNDS=9 by default)
Prints the median and the minimum per query, in ms (docs/benchmarks.md)."""
import glob, json, os, statistics, subprocess, sys, time, urllib.request

import duckdb

data, bins = sys.argv[1], sys.argv[2:]
rounds = int(os.environ.get("ROUNDS", "9"))
env = dict(os.environ, ACTLOG_DATA=data)
Q = ["SELECT tool_name, effect, count(*) FROM events GROUP BY tool_name, effect",
     "SELECT actor_id, count(*) AS denies FROM events WHERE effect = 'deny' GROUP BY actor_id ORDER BY denies DESC LIMIT 10"]
token = subprocess.run([bins[0], "tokens", "create", "--role", "query", "--name", f"scans-{time.time()}"],
                       env=env, capture_output=True, text=True, check=True).stdout.strip()
con = duckdb.connect()
files = sorted(glob.glob(data + "/segments/events-*.parquet"))
con.execute("CREATE VIEW events AS SELECT * FROM read_parquet(%s)" % json.dumps(files).replace('"', "'"))


def post(url, sql):
    req = urllib.request.Request(url + "/v1/sql", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


for b in bins:
    srv = subprocess.Popen([b, "serve", "--listen", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, text=True)
    url = next(line.strip().split(" on ")[1] for line in srv.stderr if " on http://" in line)
    times = {}
    for _ in range(rounds):
        for i, q in enumerate(Q):
            s = time.perf_counter(); post(url, q); times.setdefault(("actlog", i), []).append(time.perf_counter() - s)
        for i, q in enumerate(Q):
            s = time.perf_counter(); con.execute(q).fetchall(); times.setdefault(("duckdb", i), []).append(time.perf_counter() - s)
    srv.terminate(); srv.wait()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for i in range(len(Q)):
        print(f"{os.path.basename(b)} query {i + 1}: actlog median {med[('actlog', i)]:.1f} ms (min {min(times[('actlog', i)]) * 1000:.1f}), "
              f"DuckDB {med[('duckdb', i)]:.1f} ms (min {min(times[('duckdb', i)]) * 1000:.1f}); ratio {med[('actlog', i)] / med[('duckdb', i)]:.2f}x")
    total_a = sum(med[("actlog", i)] for i in range(len(Q)))
    total_d = sum(med[("duckdb", i)] for i in range(len(Q)))
    print(f"{os.path.basename(b)} both: actlog {total_a:.1f} ms, DuckDB {total_d:.1f} ms; ratio {total_a / total_d:.2f}x")
