#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora (fuzz/corpus/TARGET/) from the schema
examples: signed DSSE envelopes, event payloads valid and invalid, OPA
decision-log chunks, gzip bodies, C2SP checkpoints signed with the fuzz
harness's seeds (fuzz/src/lib.rs), the queries of tests/slt, and an export
manifest with its signed statement in the three shapes of the manifest
target. Deterministic; run it again after the
examples change:  python3 tools/fuzz_seeds.py
"""
import base64, glob, gzip, hashlib, json, os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
PRODUCER = Ed25519PrivateKey.from_private_bytes(bytes([0x33] * 32))
LEDGER = Ed25519PrivateKey.from_private_bytes(bytes([0x44] * 32))
TYPE = "application/vnd.actlog.event.v1+json"


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def pae(t, body):
    return b"DSSEv1 %d %s %d %s" % (len(t), t.encode(), len(body), body)


def envelope(event):
    body = json.dumps(event, separators=(",", ":")).encode()
    sig = PRODUCER.sign(pae(TYPE, body))
    return json.dumps({"payloadType": TYPE, "payload": base64.b64encode(body).decode(),
                       "signatures": [{"keyid": "pdp-1-key", "sig": base64.b64encode(sig).decode()}]})


def signed_note(body, name="fuzz.example/log"):
    pub = LEDGER.public_key().public_bytes_raw()
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + pub).digest()[:4]
    sig = LEDGER.sign(body.encode())
    return body + "\n\u2014 " + name + " " + base64.b64encode(key_id + sig).decode() + "\n"


def main():
    examples = sorted(glob.glob(os.path.join(ROOT, "schema/examples/valid/*.json")))
    events = [json.load(open(p)) for p in examples]
    for p, ev in zip(examples, events):
        name = os.path.basename(p)
        write("event", name, open(p, "rb").read())
        ev = dict(ev, pdp=dict(ev.get("pdp", {}), id="pdp-1"))
        write("envelope", name, envelope(ev))
    for i, case in enumerate(json.load(open(os.path.join(ROOT, "schema/examples/invalid.json")))):
        write("event", f"invalid-{i:02d}.json", json.dumps(case["event"]))
    ndjson = "\n".join(envelope(dict(ev, pdp=dict(ev.get("pdp", {}), id="pdp-1"))) for ev in events[:4]) + "\n"
    write("envelope", "batch.ndjson", ndjson)
    write("gzip_body", "batch.ndjson.gz", gzip.compress(ndjson.encode(), mtime=0))
    write("gzip_body", "array.json.gz", gzip.compress(("[" + ",".join(ndjson.split()) + "]").encode(), mtime=0))
    write("gzip_body", "plain-array.json", "[" + ",".join(ndjson.split()) + "]")
    opa = [
        {"decision_id": "4ca636c1-55e4-417a-b1d8-4aceb67960d1", "labels": {"id": "opa-1", "version": "1.13.1"},
         "bundles": {"authz": {"revision": "v42"}}, "path": "authz/allow", "timestamp": "2026-08-21T12:15:30.5+02:00",
         "input": {"subject": {"type": "agent", "id": "agent-7"}, "action": {"name": "invoke"},
                   "resource": {"type": "tool", "id": "search"},
                   "context": {"act": {"sub": "agent-7", "act": {"sub": "planner"}}}},
         "result": {"allow": True}, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "req_id": 7},
        {"decision_id": "d2", "labels": {"id": "opa-1"}, "path": "authz", "timestamp": "2026-08-21T10:15:30Z",
         "input": {"user": "bob", "method": "GET", "path": ["accounts", "42"]}, "result": False,
         "erased": ["/input/password"], "masked": ["/input/ssn"]},
        {"decision_id": "d3", "labels": {"id": "opa-2"}, "timestamp": "2026-08-21T10:15:30Z",
         "error": {"code": "eval_error", "message": "boom"}},
    ]
    write("opa_chunk", "chunk.json", json.dumps(opa))
    write("opa_chunk", "one.json", json.dumps(opa[:1]))
    write("opa_chunk", "empty.json", "[]")
    root = base64.b64encode(hashlib.sha256(b"root").digest()).decode()
    write("note", "checkpoint.txt", signed_note(f"fuzz.example/log\n42\n{root}\n"))
    write("note", "checkpoint-empty.txt", signed_note("fuzz.example/log\n0\n" + base64.b64encode(hashlib.sha256(b"").digest()).decode() + "\n"))
    write("note", "other-signer.txt", signed_note(f"fuzz.example/log\n7\n{root}\n", name="other.example/log"))
    pub = LEDGER.public_key().public_bytes_raw()
    key_id = hashlib.sha256(b"fuzz.example/log\n\x01" + pub).digest()[:4]
    write("note", "verifier-key.txt", "fuzz.example/log+" + key_id.hex() + "+" + base64.b64encode(b"\x01" + pub).decode())

    sql_seeds()
    manifest_seeds(signed_note(f"fuzz.example/log\n42\n{root}\n"), root)


def sql_seeds():
    """Every statement of the sqllogictest files, and a few the sandbox refuses."""
    n = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "tests/slt/*.slt"))):
        lines = open(path).read().split("\n")
        i = 0
        while i < len(lines):
            if lines[i].startswith(("query", "statement")):
                j = i + 1
                while j < len(lines) and lines[j].strip() and lines[j] != "----":
                    j += 1
                write("sql", f"slt-{n:03d}.sql", "\n".join(lines[i + 1:j]))
                n += 1
                i = j
            i += 1
    chain = " OR ".join(f"seq = {i}" for i in range(200))
    for name, q in [
        ("or-chain", f"SELECT seq FROM events WHERE {chain}"),
        ("nested", "SELECT " + "(" * 60 + "1" + ")" * 60),
        ("file", "SELECT * FROM '/etc/passwd'"),
        ("url", "SELECT * FROM 'https://example.com/x.parquet'"),
        ("read-fn", "SELECT * FROM read_parquet('x')"),
        ("copy", "COPY (SELECT 1) TO '/tmp/x'"),
        ("ddl", "CREATE TABLE t AS SELECT * FROM events"),
        ("dml", "DELETE FROM events WHERE seq = 1"),
        ("set", "SET datafusion.execution.batch_size = 1"),
        ("range", "SELECT count(*) FROM range(3000000000)"),
        ("two", "SELECT 1; SELECT 2"),
        # Valid and nested: what a parse budget must leave alone.
        ("nested-subscripts", "SELECT " + "h.a.b.c.d.e.f.s[e(x, " * 8 + "1" + ")]" * 8),
        ("nested-calls", "SELECT " + "coalesce(nullif(" * 12 + "x" + ", ''), '-')" * 12 + " FROM events"),
        ("nested-case", "SELECT " + "CASE WHEN seq > 1 THEN " * 20 + "1" + " ELSE 0 END" * 20 + " FROM events"),
        ("nested-subqueries", "SELECT * FROM " + "(SELECT * FROM " * 15 + "events" + ") t" * 15),
        ("lambda-like", "SELECT array_transform(make_array(1, 2), x -> x + 1), " + "f(a, " * 10 + "b" + ")" * 10),
    ]:
        write("sql", name + ".sql", q)


def manifest_seeds(checkpoint, root):
    """A manifest as `actlog export` writes it, its in-toto statement, and
    the envelope signed with the ledger seed: one seed per shape."""
    pub = LEDGER.public_key().public_bytes_raw()
    key_id = hashlib.sha256(b"fuzz.example/log\n\x01" + pub).digest()[:4]
    vkey = "fuzz.example/log+" + key_id.hex() + "+" + base64.b64encode(b"\x01" + pub).decode()

    def entry(path, table, body, rows, first, last):
        return {"path": path, "table": table, "sha256": hashlib.sha256(body).hexdigest(),
                "bytes": len(body), "rows": rows, "first_seq": first, "last_seq": last}

    files = [entry("events/date=2026-08-21/part-00000.parquet", "events", b"e", 2, 3, 4),
             entry("delegation_hops/date=2026-08-21/part-00000.parquet", "delegation_hops", b"h", 3, 3, 4),
             entry("leaves.parquet", "leaves", b"l", 5, 0, 4)]
    proof = {"seq": 3, "leaf_hash": root, "hashes": [root, root]}
    manifest = {"format": "actlog.export.v1", "data_format": "parquet", "origin": "fuzz.example/log",
                "verifier_key": vkey, "created_at": "2026-08-22T00:00:00Z", "from": "2026-08-21T00:00:00Z",
                "to": None, "tree_size": 42, "root_hash": root, "checkpoint": checkpoint, "events": 2,
                "first_seq": 3, "last_seq": 4, "files": files, "proofs": [proof]}
    evidence = dict(manifest, framework="nist-csf-2.0", files=files + [
        entry(n, "evidence", n.encode(), 0, 0, 0) for n in ["findings.json", "findings.ocsf.jsonl", "report.html"]])
    t = "application/vnd.in-toto+json"
    for name, m in [("export", manifest), ("evidence", evidence)]:
        body = json.dumps(m, indent=2).encode()
        subjects = [{"name": "manifest.json", "digest": {"sha256": hashlib.sha256(body).hexdigest()}},
                    {"name": "checkpoint.txt", "digest": {"sha256": hashlib.sha256(checkpoint.encode()).hexdigest()}}]
        subjects += [{"name": f["path"], "digest": {"sha256": f["sha256"]}} for f in m["files"]]
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": subjects,
                                "predicateType": "https://actlog.dev/export/v1",
                                "predicate": {"origin": m["origin"], "tree_size": 42, "root_hash": root}}).encode()
        sig = LEDGER.sign(pae(t, statement))
        env = json.dumps({"payloadType": t, "payload": base64.b64encode(statement).decode(),
                          "signatures": [{"sig": base64.b64encode(sig).decode()}]}).encode()
        write("manifest", f"{name}-envelope", b"\x00" + env + b"\x00" + body)
        write("manifest", f"{name}-statement", b"\x01" + statement + b"\x00" + body)
        write("manifest", f"{name}-derived", b"\x02" + body)


if __name__ == "__main__":
    main()
