#!/usr/bin/env python3
"""Times issue 4's two full-scan queries per query, against DuckDB over the
same Parquet files, for one or more actlog binaries in turn (one server at
a time: they share the data directory's lock). DuckDB is timed in the same
rounds as each binary, so each row has its own peer.
    python3 tools/bench_scans.py DATA_DIR BIN [BIN...]   (ROUNDS=9 by default)
    QUERIES=high-cardinality python3 tools/bench_scans.py DATA_DIR BIN
The second form times GROUP BY on near-unique keys instead, and also
DataFusion from PyPI over the events files (DataFusion's own grouping).
Prints the median and the minimum per query, in ms (docs/benchmarks.md)."""
import glob, json, os, statistics, subprocess, sys, time, urllib.request

import duckdb

data, bins = sys.argv[1], sys.argv[2:]
rounds = int(os.environ.get("ROUNDS", "9"))
env = dict(os.environ, ACTLOG_DATA=data)
QUERIES = {
    "scans": ["SELECT tool_name, effect, count(*) FROM events GROUP BY tool_name, effect",
              "SELECT actor_id, count(*) AS denies FROM events WHERE effect = 'deny' GROUP BY actor_id ORDER BY denies DESC LIMIT 10"],
    "high-cardinality": ["SELECT task_id, count(*) FROM events GROUP BY task_id ORDER BY 2 DESC LIMIT 10",
                         "SELECT principal_id, actor_id, count(*) FROM events GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10"],
}
which = os.environ.get("QUERIES", "scans")
Q = QUERIES[which]
token = subprocess.run([bins[0], "tokens", "create", "--role", "query", "--name", f"scans-{time.time()}"],
                       env=env, capture_output=True, text=True, check=True).stdout.strip()
con = duckdb.connect()
files = sorted(glob.glob(data + "/segments/events-*.parquet"))
con.execute("CREATE VIEW events AS SELECT * FROM read_parquet(%s)" % json.dumps(files).replace('"', "'"))
peers = {"duckdb": lambda q: con.execute(q).fetchall()}
if which == "high-cardinality":
    import tempfile
    from datafusion import SessionContext
    only_events = tempfile.mkdtemp()  # the segment directory also holds hops files
    for f in files:
        os.symlink(os.path.abspath(f), os.path.join(only_events, os.path.basename(f)))
    df = SessionContext()
    df.register_parquet("events", only_events + "/", file_extension=".parquet")
    peers["datafusion"] = lambda q: df.sql(q).collect()


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
        for name, run in peers.items():
            for i, q in enumerate(Q):
                s = time.perf_counter(); run(q); times.setdefault((name, i), []).append(time.perf_counter() - s)
    srv.terminate(); srv.wait()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for i in range(len(Q)):
        others = "".join(f", {name} {med[(name, i)]:.1f} ms (min {min(times[(name, i)]) * 1000:.1f})" for name in peers)
        print(f"{os.path.basename(b)} query {i + 1}: actlog median {med[('actlog', i)]:.1f} ms (min {min(times[('actlog', i)]) * 1000:.1f}){others}; "
              f"ratio to DuckDB {med[('actlog', i)] / med[('duckdb', i)]:.2f}x")
    total_a = sum(med[("actlog", i)] for i in range(len(Q)))
    total_d = sum(med[("duckdb", i)] for i in range(len(Q)))
    print(f"{os.path.basename(b)} both: actlog {total_a:.1f} ms, DuckDB {total_d:.1f} ms; ratio {total_a / total_d:.2f}x")
