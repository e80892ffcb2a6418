#!/usr/bin/env python3
"""The PostgreSQL peer for the ingest benchmark: an "audit table" built the
way a user would build it, doing the same job as actlog.

- The client verifies every ed25519 signature (PyPI `cryptography`).
- Rows are hash-chained by a trigger: pgcrypto's SHA-256 over the previous
  row's hash and the new envelope, under a table lock so the chain is total.
- `synchronous_commit = on`, one transaction per batch, the same batch size
  and concurrency as actlog's run.

It reads pre-signed envelopes (NDJSON from tools/gen_envelopes.py), so
signing is not timed, and prints one JSON line like `actlog loadgen --json`.

    python3 tools/pg_peer.py --dsn "host=/tmp/pg port=54329 dbname=postgres" \
        --envelopes events.ndjson --public-key-file pdp.pub --batch 256 --concurrency 8
"""
import argparse
import base64
import json
import multiprocessing as mp
import sys
import time

try:
    import psycopg
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError as e:
    sys.exit(f"pg_peer: missing package ({e}); python3 -m pip install 'psycopg[binary]' cryptography")

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
DROP TABLE IF EXISTS audit;
CREATE TABLE audit (
  seq        bigserial PRIMARY KEY,
  event_id   text NOT NULL UNIQUE,
  received_at timestamptz NOT NULL DEFAULT now(),
  envelope   text NOT NULL,
  payload    jsonb NOT NULL,
  prev_hash  bytea,
  row_hash   bytea NOT NULL
);
CREATE INDEX ON audit ((payload->'delegation'->'actor'->>'id'));
CREATE INDEX ON audit ((payload->'correlation'->>'task_id'));
CREATE OR REPLACE FUNCTION audit_chain() RETURNS trigger AS $$
BEGIN
  SELECT row_hash INTO NEW.prev_hash FROM audit ORDER BY seq DESC LIMIT 1;
  NEW.row_hash := digest(coalesce(NEW.prev_hash, '\\x'::bytea) || convert_to(NEW.envelope, 'UTF8'), 'sha256');
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_chain BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION audit_chain();
"""

PAYLOAD_TYPE = b"application/vnd.actlog.event.v1+json"


def pae(body):
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE, len(body), body)


def worker(args):
    dsn, batches, pub = args
    key = Ed25519PublicKey.from_public_bytes(pub)
    lat = []
    with psycopg.connect(dsn, autocommit=False) as conn:
        conn.execute("SET synchronous_commit = on")
        for batch in batches:
            t = time.perf_counter()
            rows = []
            for line in batch:
                env = json.loads(line)
                body = base64.b64decode(env["payload"])
                key.verify(base64.b64decode(env["signatures"][0]["sig"]), pae(body))
                ev = json.loads(body)
                rows.append((ev["event_id"], line, body.decode()))
            with conn.cursor() as cur:
                # The lock makes the chain a total order, as actlog's is.
                cur.execute("LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE")
                cur.executemany(
                    "INSERT INTO audit (event_id, envelope, payload) VALUES (%s, %s, %s::jsonb) "
                    "ON CONFLICT (event_id) DO NOTHING", rows)
            conn.commit()
            lat.append((time.perf_counter() - t) * 1000)
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--envelopes", required=True)
    ap.add_argument("--public-key-hex", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    with psycopg.connect(a.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    lines = [l.strip() for l in open(a.envelopes) if l.strip()]
    batches = [lines[i:i + a.batch] for i in range(0, len(lines), a.batch)]
    shards = [batches[i::a.concurrency] for i in range(a.concurrency)]
    pub = bytes.fromhex(a.public_key_hex)
    start = time.perf_counter()
    with mp.Pool(a.concurrency) as pool:
        lats = pool.map(worker, [(a.dsn, s, pub) for s in shards])
    secs = time.perf_counter() - start
    all_lat = sorted(x for l in lats for x in l)
    pct = lambda p: all_lat[max(0, min(len(all_lat) - 1, int(len(all_lat) * p + 0.999) - 1))] if all_lat else 0
    with psycopg.connect(a.dsn) as conn:
        n = conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    print(json.dumps({"events": n, "seconds": secs, "events_per_s": n / secs,
                      "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": all_lat[-1] if all_lat else 0},
                      "errors": 0}))


if __name__ == "__main__":
    main()
