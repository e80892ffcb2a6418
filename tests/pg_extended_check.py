"""Drives actlog's PostgreSQL endpoint through the extended query protocol
(Parse/Bind/Describe/Execute), the way Grafana, DBeaver and JDBC do, using
psycopg 3 with server-side parameter binding. Run by
crates/actlog-cli/tests/cli/sql.rs with the connection string as argv[1]; prints
one JSON line of what it saw, which the Rust test checks.
"""
import json
import sys

import psycopg

conninfo = sys.argv[1]
out = {}
with psycopg.connect(conninfo, autocommit=True) as conn:
    with conn.cursor() as cur:
        # Server-side binding: $1 goes over the wire as a parameter.
        cur.execute("SELECT count(*) FROM events WHERE seq < %s", (100,))
        out["count_below_100"] = cur.fetchone()[0]
        cur.execute("SELECT event_type, count(*) AS n FROM events WHERE event_type = %s GROUP BY event_type",
                    ("authz.decision",))
        row = cur.fetchone()
        out["decisions"] = [row[0], row[1]]
        out["columns"] = [d.name for d in cur.description]
        # A prepared statement run twice (Describe once, Execute twice).
        cur.execute("SELECT seq, actor_chain, event_time FROM events WHERE seq = %s", (5,), prepare=True)
        first = cur.fetchone()
        cur.execute("SELECT seq, actor_chain, event_time FROM events WHERE seq = %s", (6,), prepare=True)
        second = cur.fetchone()
        out["prepared"] = [first[0], second[0], isinstance(first[1], list), first[2].tzinfo is not None]
        # Binary results.
        with conn.cursor(binary=True) as bcur:
            bcur.execute("SELECT seq, risk_score FROM events WHERE risk_score IS NOT NULL ORDER BY seq LIMIT 1")
            b = bcur.fetchone()
            out["binary"] = [b[0], b[1]]
        try:
            cur.execute("DELETE FROM events WHERE seq = %s", (1,))
            out["refused"] = None
        except psycopg.Error as e:
            out["refused"] = e.sqlstate
print(json.dumps(out))
