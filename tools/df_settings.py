#!/usr/bin/env python3
"""Times the two issue-4 full-scan queries with DataFusion (PyPI) under
several session settings, and DuckDB, over one data directory's segments.
    python3 tools/df_settings.py DATA_DIR
Prints the middle of 5 runs per query, in ms (docs/benchmarks.md, issue 4)."""
import glob, time, sys
from datafusion import SessionContext, SessionConfig
import os, tempfile
data = sys.argv[1] if len(sys.argv) > 1 else "data"
seg = data.rstrip("/") + "/segments/"
# The segment directory also holds the hops files; DataFusion's listing
# table takes every file with the extension, so it gets links to the
# events files alone.
only_events = tempfile.mkdtemp()
for f in sorted(glob.glob(seg + "events-*.parquet")):
    os.symlink(os.path.abspath(f), os.path.join(only_events, os.path.basename(f)))
Q = ["SELECT tool_name, effect, count(*) FROM events GROUP BY tool_name, effect",
     "SELECT actor_id, count(*) AS denies FROM events WHERE effect = 'deny' GROUP BY actor_id ORDER BY denies DESC LIMIT 10"]
def middle_of_5(run_query):
    """The middle of 5 timed calls of each query, in ms."""
    best = []
    for q in Q:
        ts = []
        for _ in range(5):
            t = time.perf_counter(); run_query(q); ts.append(time.perf_counter() - t)
        best.append(sorted(ts)[2] * 1000)
    return best
def run(label, **cfg):
    c = SessionConfig()
    for k, v in cfg.items():
        c = c.set(k, str(v))
    ctx = SessionContext(c)
    ctx.register_parquet("events", only_events + "/", file_extension=".parquet")
    n = ctx.sql("SELECT count(*) FROM events").collect()[0].column(0)[0].as_py()
    best = middle_of_5(lambda q: ctx.sql(q).collect())
    print(f"{label:60s} {best[0]:7.1f} {best[1]:7.1f} = {sum(best):7.1f} ms ({n} rows)", flush=True)
run("default")
run("batch 32768", **{"datafusion.execution.batch_size": 32768})
run("batch 65536", **{"datafusion.execution.batch_size": 65536})
run("no view types", **{"datafusion.execution.parquet.schema_force_view_types": "false"})
run("pushdown_filters", **{"datafusion.execution.parquet.pushdown_filters": "true"})
run("pushdown+reorder", **{"datafusion.execution.parquet.pushdown_filters": "true", "datafusion.execution.parquet.reorder_filters": "true"})
run("skip partial agg probe 0", **{"datafusion.execution.skip_partial_aggregation_probe_rows_threshold": 0})
run("no repartition aggs", **{"datafusion.optimizer.repartition_aggregations": "false"})
run("target_partitions 4", **{"datafusion.execution.target_partitions": 4})
run("target_partitions 1", **{"datafusion.execution.target_partitions": 1})
import duckdb
con = duckdb.connect(); con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{seg}events-*.parquet')")
best = middle_of_5(lambda q: con.execute(q).fetchall())
print(f"{'duckdb':60s} {best[0]:7.1f} {best[1]:7.1f} = {sum(best):7.1f} ms")
