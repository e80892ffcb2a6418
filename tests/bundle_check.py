#!/usr/bin/env python3
"""Independent verifier for actlog export bundles (`actlog export --out DIR`).

It rebuilds every check from the written formats (DSSE PAE, in-toto Statement
v1, C2SP signed notes and verifier keys, the v1 leaf layout in schema/leaf.md,
the blake3 hash chain, RFC 6962/9162 inclusion proofs) and shares no code with
the Rust `actlog verify --bundle`, so a bug the Rust side repeats in both its
writer and its verifier shows up here.

What it checks, in order:
  0. manifest.json (and an evidence bundle's findings.json) match their JSON
     Schemas in schema/export/.
  1. manifest.json's verifier_key is a well-formed C2SP ed25519 key whose key id
     matches; with --key it must equal the given key.
  2. manifest.dsse.json is signed by that key (DSSE PAE); its in-toto Statement
     lists every file of the bundle (except itself) with the right SHA-256, no
     file is missing or unlisted, and its predicate agrees with manifest.json.
  3. checkpoint.txt equals manifest.checkpoint, is signed by the ledger key, and
     names the manifest's origin, tree_size and root_hash.
  4. leaves.parquet: each leaf is well formed and its seq matches; consecutive
     leaves link through the blake3 chain; every seq from first_seq to last_seq
     is present; the last leaf of each run of consecutive seqs (and every leaf
     that comes with a proof) has an RFC 6962 inclusion proof to the root (when
     the bundle holds the whole log, the root is also rebuilt from it); each
     stored envelope hashes to the leaf's envelope and payload digests, and
     ledger-signed (kind 3) envelopes carry a valid ledger signature.
  5. data files: row counts, seq ranges, bytes and the events total match the
     manifest; each row's seq is a leaf with an envelope (events rows also carry
     the same leaf hash, delegation_hops rows the same event id); the events are
     exactly the leaves from first_seq to last_seq that have an envelope.

Usage: python3 tests/bundle_check.py BUNDLE_DIR [--key C2SP_VERIFIER_KEY]
Exit 0 and one `ok:` line when intact, 1 with a message when not, 2 on bad use.
Needs: blake3, cryptography, duckdb (pip install blake3 cryptography duckdb).
"""
import argparse
import base64
import hashlib
import json
import os
import struct
import sys

try:
    import blake3
    import duckdb
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from jsonschema import Draft202012Validator
except ImportError as e:
    print(f"missing package: {e.name}: run  pip install blake3 cryptography duckdb jsonschema", file=sys.stderr)
    sys.exit(2)

DSSE_FILE, MANIFEST, CHECKPOINT, LEAVES = "manifest.dsse.json", "manifest.json", "checkpoint.txt", "leaves.parquet"
FINDINGS = "findings.json"
SCHEMAS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema", "export")
EVENT_TABLES = ("events", "ocsf")


class Bad(Exception):
    pass


def need(ok, msg):
    if not ok:
        raise Bad(msg)


def sha256(b):
    return hashlib.sha256(b).digest()


def b64d(s, what):
    try:
        return base64.b64decode(s, validate=True)
    except (ValueError, TypeError):
        raise Bad(f"{what}: not standard base64: {s!r}")


def ed25519_ok(pub, sig, msg):
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def pae(ptype, body):
    t = ptype.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def parse_verifier_key(vkey):
    """C2SP verifier key `name+hexkeyid+base64(0x01 || pubkey)` -> (name, key id, pubkey)."""
    # The name has no "+" (C2SP); the base64 key may.
    parts = vkey.split("+", 2)
    need(len(parts) == 3, f"{MANIFEST}: verifier_key is not name+keyid+key: {vkey!r}")
    name, hex_id, key = parts
    raw = b64d(key, f"{MANIFEST}: verifier_key")
    need(len(raw) == 33 and raw[0] == 1, f"{MANIFEST}: verifier_key is not an ed25519 (0x01) key")
    key_id = sha256(name.encode() + b"\n" + raw)[:4]
    need(hex_id == key_id.hex(), f"{MANIFEST}: verifier_key id {hex_id} != computed {key_id.hex()}")
    return name, key_id, raw[1:]


def check_note(text, name, key_id, pub):
    """C2SP signed note; returns the body lines once a signature by our key verifies."""
    need("\n\n" in text and text.endswith("\n"), f"{CHECKPOINT}: not a signed note (body, blank line, signatures)")
    body, sigs = text.split("\n\n", 1)
    body += "\n"
    good = False
    for line in sigs[:-1].split("\n"):
        need(line.startswith("\u2014 "), f"{CHECKPOINT}: bad signature line {line!r}")
        fields = line[2:].split(" ")
        need(len(fields) == 2, f"{CHECKPOINT}: bad signature line {line!r}")
        blob = b64d(fields[1], f"{CHECKPOINT}: signature")
        if fields[0] == name and len(blob) == 68 and blob[:4] == key_id:
            need(ed25519_ok(pub, blob[4:], body.encode()), f"{CHECKPOINT}: ledger signature does not verify")
            good = True
    need(good, f"{CHECKPOINT}: no signature by {name}")
    return body.split("\n")[:-1]


def inclusion_root(index, size, leaf_hash, path):
    """RFC 9162 section 2.1.3.2: the root an audit path leads to, or None if the path has the wrong shape."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def tree_root(hashes):
    """RFC 6962 MTH over leaf hashes: split at the largest power of two below n."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return sha256(b"\x01" + tree_root(hashes[:k]) + tree_root(hashes[k:]))


def check_files(bundle, pub, key_id, manifest_bytes):
    env = json.loads(open(os.path.join(bundle, DSSE_FILE), "rb").read())
    need(env.get("payloadType") == "application/vnd.in-toto+json", f"{DSSE_FILE}: payloadType {env.get('payloadType')!r}")
    body = b64d(env.get("payload", ""), f"{DSSE_FILE}: payload")
    sigs = [b64d(s.get("sig", ""), f"{DSSE_FILE}: sig") for s in env.get("signatures", [])]
    need(any(ed25519_ok(pub, s, pae(env["payloadType"], body)) for s in sigs),
         f"{DSSE_FILE}: no signature verifies with the ledger key {key_id.hex()}")
    st = json.loads(body)
    need(st.get("_type") == "https://in-toto.io/Statement/v1", f"{DSSE_FILE}: _type {st.get('_type')!r}")
    need(st.get("predicateType") == "https://actlog.dev/export/v1", f"{DSSE_FILE}: predicateType {st.get('predicateType')!r}")
    subjects = {}
    for s in st.get("subject", []):
        name = s["name"]
        need(name not in subjects, f"{DSSE_FILE}: subject {name} listed twice")
        need(not name.startswith("/") and ".." not in name.split("/") and name != DSSE_FILE,
             f"{DSSE_FILE}: bad subject name {name!r}")
        subjects[name] = s["digest"]["sha256"]
    on_disk = set()
    for root, dirs, names in os.walk(bundle):
        for n in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            on_disk.add(os.path.relpath(os.path.join(root, n), bundle).replace(os.sep, "/"))
    on_disk.discard(DSSE_FILE)
    extra, missing = sorted(on_disk - set(subjects)), sorted(set(subjects) - on_disk)
    if extra:
        raise Bad(f"{extra[0]}: file is not listed in {DSSE_FILE}")
    if missing:
        raise Bad(f"{missing[0]}: listed in {DSSE_FILE} but missing")
    for name, want in sorted(subjects.items()):
        got = hashlib.sha256(open(os.path.join(bundle, name), "rb").read()).hexdigest()
        need(got == want, f"{name}: sha256 {got} != signed {want}")
    need(hashlib.sha256(manifest_bytes).hexdigest() == subjects.get(MANIFEST), f"{MANIFEST}: not covered by {DSSE_FILE}")
    need({CHECKPOINT, LEAVES} <= set(subjects), f"{DSSE_FILE}: {CHECKPOINT} or {LEAVES} not listed")
    return subjects, st.get("predicate", {})


def read_leaves(path):
    rows = duckdb.connect().execute("select seq, leaf, envelope from read_parquet(?) order by seq", [path]).fetchall()
    leaves = {}
    for seq, leaf, envelope in rows:
        need(seq not in leaves, f"{LEAVES}: seq {seq} appears twice")
        need(len(leaf) >= 148, f"{LEAVES}: seq {seq}: leaf is {len(leaf)} bytes")
        version, kind, lseq, _ = struct.unpack(">BBQQ", leaf[:18])
        (eid_len,) = struct.unpack(">H", leaf[146:148])
        need(version == 1 and kind in (1, 2, 3), f"{LEAVES}: seq {seq}: version {version} kind {kind}")
        need(lseq == seq, f"{LEAVES}: seq {seq}: leaf says seq {lseq}")
        need(len(leaf) == 148 + eid_len, f"{LEAVES}: seq {seq}: event id length {eid_len} vs leaf {len(leaf)} bytes")
        leaves[seq] = (bytes(leaf), None if envelope is None else bytes(envelope))
    return leaves


def check_leaves(m, leaves, root, tree_size, ledger_pub):
    seqs = sorted(leaves)
    need(seqs, f"{LEAVES}: no leaves")
    need(seqs[-1] < tree_size, f"{LEAVES}: seq {seqs[-1]} is beyond tree size {tree_size}")
    for s in range(m["first_seq"], m["last_seq"] + 1):
        need(s in leaves, f"{LEAVES}: seq {s} missing (manifest covers {m['first_seq']}..{m['last_seq']})")
    proofs = {}
    for p in m["proofs"]:
        s = p["seq"]
        need(s in leaves, f"{MANIFEST}: proof for seq {s} which is not in {LEAVES}")
        lh = sha256(b"\x00" + leaves[s][0])
        need(b64d(p["leaf_hash"], f"proof {s}") == lh, f"{MANIFEST}: proof seq {s}: leaf_hash is not the leaf's hash")
        path = [b64d(h, f"proof {s}") for h in p["hashes"]]
        need(inclusion_root(s, tree_size, lh, path) == root, f"{MANIFEST}: proof seq {s}: does not lead to the checkpoint root")
        proofs[s] = True
    for i, s in enumerate(seqs):
        leaf, envelope = leaves[s]
        if s == 0:
            need(leaf[114:146] == bytes(32), f"{LEAVES}: seq 0: previous chain hash is not zero")
        nxt = seqs[i + 1] if i + 1 < len(seqs) else None
        if nxt == s + 1:
            want = blake3.blake3(leaf[114:146] + leaf).digest()
            need(leaves[nxt][0][114:146] == want, f"{LEAVES}: seq {nxt}: previous chain hash does not match seq {s}")
        else:
            need(s in proofs, f"{MANIFEST}: no inclusion proof for seq {s}, the last leaf of a run")
        if envelope is None:
            continue
        need(sha256(envelope) == leaf[18:50], f"{LEAVES}: seq {s}: envelope does not match the leaf's envelope hash")
        try:
            env = json.loads(envelope)
            payload = base64.b64decode(env["payload"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise Bad(f"{LEAVES}: seq {s}: envelope is not JSON with a base64 payload")
        need(sha256(payload) == leaf[50:82], f"{LEAVES}: seq {s}: payload does not match the leaf's payload hash")
        if leaf[1] == 3:
            need(leaf[82:114] == sha256(ledger_pub), f"{LEAVES}: seq {s}: ledger record key id is not the ledger key")
            sigs = [b64d(x.get("sig", ""), f"seq {s} sig") for x in env.get("signatures", [])]
            need(any(ed25519_ok(ledger_pub, x, pae(env.get("payloadType", ""), payload)) for x in sigs),
                 f"{LEAVES}: seq {s}: ledger record signature does not verify")
    if seqs == list(range(tree_size)):  # the whole log is here: rebuild the root outright
        need(tree_root([sha256(b"\x00" + leaves[s][0]) for s in seqs]) == root, f"{LEAVES}: leaves do not hash to the checkpoint root")
    return len(proofs)


def data_rows(bundle, name, table):
    """(seq, leaf hash hex or None, event id or None) per row of a data file."""
    path = os.path.join(bundle, name)
    if path.endswith(".parquet"):
        con = duckdb.connect()
        if table == "events":
            return con.execute("select seq, leaf_hash, event_id from read_parquet(?)", [path]).fetchall()
        return [(s, None, e) for s, e in con.execute("select seq, event_id from read_parquet(?)", [path]).fetchall()]
    need(name.endswith((".ndjson", ".jsonl")), f"{name}: unknown data file type")
    data = open(path, "rb").read()
    need(data == b"" or data.endswith(b"\n"), f"{name}: last line has no newline")
    out = []
    for n, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            row = json.loads(line)
            if table == "ocsf":
                row = dict(row["unmapped"]["actlog"], event_id=row["metadata"]["uid"])
            out.append((row["seq"], row.get("leaf_hash"), row.get("event_id")))
        except (ValueError, KeyError, TypeError):
            raise Bad(f"{name}: line {n} is not a {table} JSON row")
    return out


def check_data(bundle, m, leaves):
    events, event_seqs = 0, set()
    for f in m["files"]:
        name, table = f["path"], f["table"]
        full = os.path.join(bundle, name)
        need(os.path.getsize(full) == f["bytes"], f"{name}: {os.path.getsize(full)} bytes, manifest says {f['bytes']}")
        if table == "evidence":
            continue  # evidence reports (findings, OCSF findings, HTML): checked by hash only
        if table == "leaves":
            need(name == LEAVES, f"{MANIFEST}: leaves table in {name}")
            rows = [(s, None, None) for s in leaves]
        else:
            need(table in ("events", "delegation_hops", "ocsf"), f"{MANIFEST}: {name}: unknown table {table!r}")
            rows = data_rows(bundle, name, table)
        need(len(rows) == f["rows"], f"{name}: {len(rows)} rows, manifest says {f['rows']}")
        if rows:
            lo, hi = min(r[0] for r in rows), max(r[0] for r in rows)
            need((lo, hi) == (f["first_seq"], f["last_seq"]), f"{name}: seqs {lo}..{hi}, manifest says {f['first_seq']}..{f['last_seq']}")
        if table == "leaves":
            continue
        for seq, leaf_hash, event_id in rows:
            need(seq in leaves and leaves[seq][1] is not None, f"{name}: seq {seq} has no leaf with an envelope")
            leaf = leaves[seq][0]
            if leaf_hash is not None:
                need(leaf_hash == sha256(b"\x00" + leaf).hex(), f"{name}: seq {seq}: leaf_hash is not the leaf's hash")
            if event_id is not None:
                need(event_id.encode() == leaf[148:], f"{name}: seq {seq}: event_id does not match the leaf")
        if table in EVENT_TABLES:
            events += len(rows)
            for seq, _, _ in rows:
                need(seq not in event_seqs, f"{name}: seq {seq}: event exported twice")
                event_seqs.add(seq)
    need(events == m["events"], f"{MANIFEST}: events {m['events']} but data files hold {events}")
    # Ledger records (kind 3) keep their envelopes even outside the window.
    want = {s for s in range(m["first_seq"], m["last_seq"] + 1) if leaves[s][1] is not None and leaves[s][0][1] != 3}
    unexported = sorted(want - event_seqs)
    have = {s for s in range(m["first_seq"], m["last_seq"] + 1) if leaves[s][1] is not None}
    outside = sorted(event_seqs - have)
    if unexported:
        raise Bad(f"{LEAVES}: seq {unexported[0]} has an envelope but no exported event row")
    if outside:
        raise Bad(f"{MANIFEST}: event seq {outside[0]} is outside {m['first_seq']}..{m['last_seq']}")
    return events


def check_schema(name, schema_file, doc):
    """The document against its JSON Schema in schema/export/."""
    schema = json.load(open(os.path.join(SCHEMAS, schema_file)))
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise Bad(f"{name}: does not match schema/export/{schema_file} at {where}: {e.message[:200]}")


def verify(bundle, key):
    manifest_bytes = open(os.path.join(bundle, MANIFEST), "rb").read()
    m = json.loads(manifest_bytes)
    check_schema(MANIFEST, "manifest.v1.schema.json", m)
    if m.get("framework") is not None:
        check_schema(FINDINGS, "findings.v1.schema.json", json.load(open(os.path.join(bundle, FINDINGS))))
    need(m.get("format") == "actlog.export.v1", f"{MANIFEST}: format {m.get('format')!r}")
    need(m.get("data_format") in ("parquet", "ndjson", "ocsf"), f"{MANIFEST}: data_format {m.get('data_format')!r}")
    if key is not None:
        need(key == m["verifier_key"], f"{MANIFEST}: verifier_key {m['verifier_key']} is not the given --key")
    name, key_id, pub = parse_verifier_key(m["verifier_key"])
    need(m["origin"] == name, f"{MANIFEST}: origin {m['origin']!r} is not the key name {name!r}")

    subjects, predicate = check_files(bundle, pub, key_id, manifest_bytes)
    for k, v in predicate.items():
        need(m.get(k) == v, f"{DSSE_FILE}: predicate {k}={v!r} but {MANIFEST} has {m.get(k)!r}")
    listed = {f["path"]: f["sha256"] for f in m["files"]}
    need(len(listed) == len(m["files"]), f"{MANIFEST}: a file is listed twice")
    need(set(listed) == set(subjects) - {CHECKPOINT, MANIFEST}, f"{MANIFEST}: files differ from the signed subjects")
    for p, h in listed.items():
        need(subjects[p] == h, f"{p}: manifest sha256 differs from the signed subject")

    note = open(os.path.join(bundle, CHECKPOINT), "rb").read().decode()
    need(note == m["checkpoint"], f"{CHECKPOINT}: differs from manifest.checkpoint")
    body = check_note(note, name, key_id, pub)
    need(len(body) == 3, f"{CHECKPOINT}: body has {len(body)} lines, expected 3")
    need(body[0] == name, f"{CHECKPOINT}: origin {body[0]!r} is not {name!r}")
    need(body[1] == str(m["tree_size"]), f"{CHECKPOINT}: tree size {body[1]} != manifest {m['tree_size']}")
    need(body[2] == m["root_hash"], f"{CHECKPOINT}: root {body[2]} != manifest {m['root_hash']}")
    root = b64d(m["root_hash"], f"{MANIFEST}: root_hash")
    need(len(root) == 32, f"{MANIFEST}: root_hash is {len(root)} bytes")

    leaves = read_leaves(os.path.join(bundle, LEAVES))
    nproofs = check_leaves(m, leaves, root, m["tree_size"], pub)
    events = check_data(bundle, m, leaves)
    pinned = "pinned by --key" if key else "taken from the bundle, pass --key to pin it"
    return (f"ok: {events} events, {len(leaves)} leaves, {len(subjects)} files, {nproofs} proofs, "
            f"tree size {m['tree_size']}, key {name}+{key_id.hex()} ({pinned}; independent check)")


def main():
    ap = argparse.ArgumentParser(description="Independently verify an actlog export bundle.")
    ap.add_argument("bundle")
    ap.add_argument("--key", help="expected C2SP verifier key of the ledger")
    args = ap.parse_args()
    try:
        print(verify(args.bundle, args.key))
    except Bad as e:
        print(f"FAIL {args.bundle}: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, duckdb.Error) as e:
        print(f"FAIL {args.bundle}: cannot read bundle: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
