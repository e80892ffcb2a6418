#!/usr/bin/env python3
"""RocksDB's size under --hot-retention (issue 15).

Builds a ledger of EVENTS generated events (actlog-gen, the real append
path), serves it with `--archive file://...` and `--hot-retention 1s`,
waits until every full range below the head has left RocksDB, and reports
RocksDB's bytes before and after, per column family, and what RocksDB still
keeps for each archived event. Then times one event read below the cold
floor (a row group fetched from the archive) and one from the cache, and
chains (`GET /v1/chains/{event_id}`, the decision with its task's events)
of archived decisions: p50 of the first request for each (its row groups
fetched: cold) and of the second (cached: warm), against hot decisions.

Scans: the same SQL (full-scan aggregates and a one-day window) is timed
over local segments (a first server, archiving only) and over retired
segments, read from the archive's data files (a second server, with
retention): the first run (cold: files fetched and hashed) and the median
of three more (warm: from archive_segment_cache_bytes). It also reports
the local disk kept per archived event (RocksDB plus `segments/`).

    python3 tools/bench_retention.py --bin target/release/actlog \
        --gen target/release/actlog-gen [--events 1000000]

Without `--gen`, the events come from `actlog loadgen` over HTTP (16 PDPs)
into a server started for that, for builds that have no actlog-gen binary.

Prints one JSON line.
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
import urllib.error
import urllib.request

from benchlib import du, served_url

RANGE = 65_536


def get(url, token, path):
    req = urllib.request.Request(f"{url}{path}", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def metric(url, token, name):
    for line in get(url, token, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise SystemExit(f"no metric {name}")


def sql(url, token, query):
    req = urllib.request.Request(f"{url}/v1/sql", data=json.dumps({"sql": query}).encode(),
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())["rows"]
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{query}: {e.code} {e.read().decode()}")


def p50(xs):
    xs = sorted(xs)
    return round(xs[len(xs) // 2], 1)


def timed_ms(f):
    s = time.monotonic()
    f()
    return (time.monotonic() - s) * 1000


def info(binary, data):
    out = subprocess.run([binary, "--data", data, "info", "--storage", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def scan_queries(url, token):
    """The scans timed over local and archived segments: two full-scan
    aggregates and a one-day window (the day of the median event)."""
    lo, hi = sql(url, token, "SELECT to_unixtime(min(event_time)), to_unixtime(max(event_time)) FROM events")[0]
    mid = time.strftime("%Y-%m-%d", time.gmtime((float(lo) + float(hi)) / 2))
    return {
        "group_by_effect": "SELECT effect, count(*) FROM events GROUP BY effect ORDER BY effect",
        "distinct_principals": "SELECT count(*), count(DISTINCT principal_id), max(chain_depth) FROM events",
        "one_day_window": f"SELECT event_type, count(*) FROM events WHERE event_time >= TIMESTAMP '{mid}T00:00:00Z' "
                          f"AND event_time < TIMESTAMP '{mid}T00:00:00Z' + INTERVAL '1 day' GROUP BY 1 ORDER BY 1",
    }


def time_scans(url, token, queries):
    """Each query: the first run, the median of three more, and its rows."""
    out = {}
    for name, q in queries.items():
        rows = []
        first = timed_ms(lambda: rows.append(sql(url, token, q)))
        warm = [timed_ms(lambda: sql(url, token, q)) for _ in range(3)]
        out[name] = {"first_ms": round(first, 1), "warm_ms": p50(warm), "rows": rows[0]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--gen", help="actlog-gen; without it, `actlog loadgen` over HTTP")
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-retention-", dir="/var/tmp")
    data, archive = os.path.join(work, "data"), os.path.join(work, "archive")
    try:
        token = subprocess.run([args.bin, "--data", data, "init", "--origin", "bench.actlog.test"], check=True,
                               capture_output=True, text=True).stdout.strip()
        if args.gen:
            subprocess.run([args.gen, "--data", data, "--events", str(args.events), "--seed", "1", "--pdps", "16",
                            "--days", "30"], check=True, stdout=subprocess.DEVNULL)
        else:
            srv = subprocess.Popen([args.bin, "--data", data, "serve", "--listen", "127.0.0.1:0"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                url = served_url(srv)
                threading.Thread(target=lambda: srv.stderr.read(), daemon=True).start()
                subprocess.run([args.bin, "loadgen", "--url", url, "--admin-token", token, "--pdps", "16",
                                "--batch", "500", "--concurrency", "2", "--duration", "3600",
                                "--events", str(args.events), "--json"], check=True, stdout=subprocess.DEVNULL)
            finally:
                srv.terminate()
                srv.wait()
        # A writable `actlog sql` seals every full segment first, as a
        # running server would have done long before its ranges age out.
        subprocess.run([args.bin, "--data", data, "sql", "SELECT 1", "--format", "csv"], check=True,
                       stdout=subprocess.DEVNULL)
        # Settle RocksDB the same way before and after: a compaction happens
        # on close, so both figures are of a closed, flushed database.
        before_db = du(os.path.join(data, "db"))
        before_segments = du(os.path.join(data, "segments"))
        before = info(args.bin, data)
        tree = before["tree_size"]
        want = (tree - 1) // RANGE * RANGE  # every full range below the head
        env = dict(os.environ, ACTLOG_DATA=data)

        def serve(extra):
            srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--archive", f"file://{archive}",
                                    "--sql-time-ms", "20000"] + extra, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            base = served_url(srv)
            log = []
            threading.Thread(target=lambda: log.extend(srv.stderr), daemon=True).start()
            return srv, base, log

        def wait(base, log, name, at_least):
            while metric(base, token, name) < at_least:
                if metric(base, token, "actlog_archive_failures_total") > 0:
                    raise SystemExit("an archiver turn failed:\n" + "".join(l for l in log if "ERROR" in l))
                time.sleep(0.2)

        # First, archive only: the scans over local segments.
        srv, base, log = serve([])
        try:
            wait(base, log, "actlog_archive_end_seq", want)
            queries = scan_queries(base, token)
            scans_local = time_scans(base, token, queries)
        finally:
            srv.terminate()
            srv.wait()
        srv, base, log = serve(["--hot-retention", "1s"])
        try:
            t0 = time.monotonic()
            wait(base, log, "actlog_cold_floor_seq", want)
            seconds = time.monotonic() - t0
            wait(base, log, "actlog_retired_segments_total", want // RANGE)
            scans_archived = time_scans(base, token, queries)
            for name in queries:
                if scans_archived[name]["rows"] != scans_local[name]["rows"]:
                    raise SystemExit(f"{name}: the archived segments answered differently")
            fetches = metric(base, token, "actlog_archive_segment_fetches_total")
            # One read below the floor: the first fetches its range, the
            # second is served from archive_cache_bytes.
            seq = RANGE + 12_345
            s = time.monotonic()
            get(base, token, f"/v1/events/{seq}")
            cold_ms = (time.monotonic() - s) * 1000
            s = time.monotonic()
            get(base, token, f"/v1/events/{seq + 1}")
            cached_ms = (time.monotonic() - s) * 1000
            s = time.monotonic()
            get(base, token, f"/v1/events/{tree - 2}")
            hot_ms = (time.monotonic() - s) * 1000
            # Chains: one archived decision per 8,192-leaf row group not
            # read yet (cold, then warm), and hot ones above the floor.
            cold_ids = [r[0] for r in sql(base, token, f"""
                SELECT min(event_id) FROM events WHERE event_type = 'authz.decision' AND seq < {want}
                  AND seq >= {2 * RANGE} AND seq % 8192 BETWEEN 100 AND 400 GROUP BY seq / 8192 ORDER BY 1 LIMIT 40""")]
            hot_ids = [r[0] for r in sql(base, token, f"""
                SELECT event_id FROM events WHERE event_type = 'authz.decision' AND seq >= {want}
                ORDER BY seq LIMIT 40""")]
            chain = lambda i: get(base, token, f"/v1/chains/{i}")
            chain_cold = [timed_ms(lambda: chain(i)) for i in cold_ids]
            chain_warm = [timed_ms(lambda: chain(i)) for i in cold_ids]
            chain_hot = [timed_ms(lambda: chain(i)) for i in hot_ids]
            chain_hot = [timed_ms(lambda: chain(i)) for i in hot_ids]
        finally:
            srv.terminate()
            srv.wait()
        after_db = du(os.path.join(data, "db"))
        # The retired segments' files go once no query can still read them
        # (sql_time_ms + 5 s); a restart deletes what is left at once.
        subprocess.run([args.bin, "--data", data, "sql", "SELECT 1", "--format", "csv"], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, ACTLOG_ARCHIVE=f"file://{archive}"))
        after_segments = du(os.path.join(data, "segments"))
        after = info(args.bin, data)
        floor = after["cold_floor"]
        hot = after["tree_size"] - floor
        per_event_before = before_db / tree
        # What RocksDB keeps per archived event: what is left once the hot
        # events' share (at the before rate) is taken out.
        kept_per_archived = (after_db - hot * per_event_before) / floor
        local_per_event_before = (before_db + before_segments) / tree
        local_kept_per_archived = (after_db + after_segments - hot * local_per_event_before) / floor
        ratio = lambda k: {name: round(scans_archived[name][k] / scans_local[name][k], 2) for name in queries}
        cf = {name: {"before": before["storage"][name]["bytes"], "after": after["storage"][name]["bytes"]}
              for name in before["storage"]}
        print(json.dumps({
            "events": tree,
            "cold_floor": floor,
            "hot_events": hot,
            "seconds_to_move": round(seconds, 1),
            "rocksdb_bytes_before": before_db,
            "rocksdb_bytes_after": after_db,
            "after_over_before": round(after_db / before_db, 3),
            "rocksdb_bytes_per_event_before": round(per_event_before, 1),
            "rocksdb_bytes_kept_per_archived_event": round(kept_per_archived, 1),
            "segments_bytes_before": before_segments,
            "segments_bytes_after": after_segments,
            "local_bytes_per_event_before": round(local_per_event_before, 1),
            "local_bytes_kept_per_archived_event": round(local_kept_per_archived, 1),
            "archive_bytes": du(archive),
            "scan_ms_local": {n: {k: v for k, v in t.items() if k != "rows"} for n, t in scans_local.items()},
            "scan_ms_archived": {n: {k: v for k, v in t.items() if k != "rows"} for n, t in scans_archived.items()},
            "archived_over_local_first": ratio("first_ms"),
            "archived_over_local_warm": ratio("warm_ms"),
            "archived_segment_fetches": fetches,
            "logical_bytes_by_column_family": cf,
            "read_ms": {"archived_first": round(cold_ms, 1), "archived_cached": round(cached_ms, 1),
                        "hot": round(hot_ms, 1)},
            "chain_ms_p50": {"archived_cold": p50(chain_cold), "archived_warm": p50(chain_warm),
                             "hot": p50(chain_hot), "chains": len(chain_cold)},
        }))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
