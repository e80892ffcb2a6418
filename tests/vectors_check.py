#!/usr/bin/env python3
"""Independent re-implementation of the actlog v1 formats, checked against
schema/vectors/v1.json.

Everything here is rebuilt from the documented formats (DSSE PAE, the v1 leaf
layout, the blake3 hash chain, RFC 6962/9162 Merkle trees and proofs, C2SP
signed notes), not from the Rust code, so a passing run means two separate
implementations agree byte for byte.

Usage: python3 tests/vectors_check.py [path/to/v1.json]
Needs: blake3 (pip install blake3), cryptography (pip install cryptography).
"""
import base64
import hashlib
import json
import os
import struct
import sys

try:
    import blake3
except ImportError:
    print("missing package 'blake3': run  pip install blake3", file=sys.stderr)
    sys.exit(2)
try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
except ImportError:
    print("missing package 'cryptography': run  pip install cryptography", file=sys.stderr)
    sys.exit(2)

DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schema", "vectors", "v1.json")
RESULTS = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(f"ok {name}" if ok else f"FAIL {name}: {detail}")


def eq(name, got, want):
    """got is what we recomputed, want is what the vectors file says."""
    detail = f"got {got!r}, want {want!r}"
    if isinstance(got, str) and isinstance(want, str) and got != want and max(len(got), len(want)) > 80:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        detail = f"first difference at char {at}: got ...{got[at:at + 24]!r}, want ...{want[at:at + 24]!r}"
    check(name, got == want, detail)


def sha256(b):
    return hashlib.sha256(b).digest()


def b64d(s):
    return base64.b64decode(s, validate=True)


def raw_public(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


def ed25519_ok(pub, sig, msg):
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---- DSSE, leaf, chain -------------------------------------------------------
def pae(ptype, body):
    t = ptype.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def leaf_bytes(kind, seq, nanos, env_sha, payload_sha, key_id, prev, event_id):
    eid = event_id.encode()
    return (struct.pack(">BBQQ", 1, kind, seq, nanos) + env_sha + payload_sha + key_id + prev
            + struct.pack(">H", len(eid)) + eid)


def leaf_hash(leaf):
    return sha256(b"\x00" + leaf)


def node(left, right):
    return sha256(b"\x01" + left + right)


def chain_hash(prev, leaf):
    return blake3.blake3(prev + leaf).digest()


# ---- RFC 6962 / RFC 9162 Merkle trees -----------------------------------------
def split(n):  # largest power of two strictly less than n (n > 1)
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    if not d:
        return sha256(b"")
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return node(mth(d[:k]), mth(d[k:]))


def path(m, d):  # RFC 6962 2.1.1
    if len(d) <= 1:
        return []
    k = split(len(d))
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):  # RFC 6962 2.1.2
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = split(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def verify_inclusion(index, size, lh, proof, root):  # RFC 9162 2.1.3.2
    if index >= size:
        return False
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):  # RFC 9162 2.1.4.2
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_hash] + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


# ---- the checks ---------------------------------------------------------------
def main(path_arg):
    with open(path_arg, "rb") as f:
        v = json.load(f)
    h = bytes.fromhex

    # 1. keys
    led, prod = v["ledger"], v["producer"]
    led_pk, prod_pk = raw_public(h(led["seed_hex"])), raw_public(h(prod["seed_hex"]))
    eq("keys.ledger_public", led_pk.hex(), led["public_key_hex"])
    eq("keys.producer_public", prod_pk.hex(), prod["public_key_hex"])
    prod_kid = sha256(prod_pk)
    eq("keys.producer_key_id", prod_kid.hex(), prod["key_id_hex"])
    origin = led["origin"]
    led_kid = sha256(origin.encode() + b"\n\x01" + led_pk)[:4]
    eq("keys.ledger_key_id", led_kid.hex(), led["key_id_hex"])
    vkey_b64 = base64.b64encode(b"\x01" + led_pk).decode()
    vkey = f"{origin}+{led_kid.hex()}+{vkey_b64}"
    eq("keys.verifier_key", vkey, led["verifier_key"])

    # 2-4. entries: envelope, PAE, signature, leaf, leaf hash, chain
    prev, leaves, leaf_hashes = bytes(32), [], []
    for i, e in enumerate(v["entries"]):
        n = f"entry[{i}]"
        eq(f"{n}.seq", e["seq"], i)
        payload, envelope = e["payload"].encode(), e["envelope"].encode()
        p = pae(e["payload_type"], payload)
        eq(f"{n}.pae", p.hex(), e["pae_hex"])
        try:
            env = json.loads(envelope)
            eq(f"{n}.envelope.payloadType", env["payloadType"], e["payload_type"])
            eq(f"{n}.envelope.payload", b64d(env["payload"]), payload)
            eq(f"{n}.envelope.sig", b64d(env["signatures"][0]["sig"]), b64d(e["signature_b64"]))
        except (ValueError, KeyError, IndexError, TypeError) as err:
            check(f"{n}.envelope.parse", False, repr(err))
        check(f"{n}.signature", ed25519_ok(prod_pk, b64d(e["signature_b64"]), p), "ed25519 over PAE fails")
        env_sha, pay_sha = sha256(envelope), sha256(payload)
        eq(f"{n}.envelope_sha256", env_sha.hex(), e["envelope_sha256_hex"])
        eq(f"{n}.payload_sha256", pay_sha.hex(), e["payload_sha256_hex"])
        eq(f"{n}.producer_key_id", prod_kid.hex(), e["producer_key_id_hex"])
        eq(f"{n}.prev_chain_hash", prev.hex(), e["prev_chain_hash_hex"])
        leaf = leaf_bytes(e["kind"], e["seq"], e["received_at_unix_nanos"], env_sha, pay_sha,
                          prod_kid, prev, e["event_id"])
        eq(f"{n}.leaf", leaf.hex(), e["leaf_hex"])
        eq(f"{n}.leaf_hash", leaf_hash(leaf).hex(), e["leaf_hash_hex"])
        prev = chain_hash(prev, leaf)
        eq(f"{n}.chain_hash", prev.hex(), e["chain_hash_hex"])
        leaves.append(leaf)
        leaf_hashes.append(leaf_hash(leaf))

    # 5. Merkle roots and proofs
    m = v["merkle"]
    for r in m["roots"]:
        eq(f"merkle.root[{r['tree_size']}]", mth(leaf_hashes[:r["tree_size"]]).hex(), r["root_hex"])
    for p in m["inclusion"]:
        idx, size, proof = p["seq"], p["tree_size"], [h(x) for x in p["hashes_hex"]]
        n = f"merkle.inclusion[{idx},{size}]"
        eq(f"{n}.path", [x.hex() for x in path(idx, leaf_hashes[:size])], p["hashes_hex"])
        check(f"{n}.verify", verify_inclusion(idx, size, leaf_hashes[idx], proof, mth(leaf_hashes[:size])),
              "RFC 9162 inclusion verification fails")
    for c in m["consistency"]:
        old, new, proof = c["old"], c["new"], [h(x) for x in c["hashes_hex"]]
        n = f"merkle.consistency[{old},{new}]"
        eq(f"{n}.proof", [x.hex() for x in subproof(old, leaf_hashes[:new], True)], c["hashes_hex"])
        check(f"{n}.verify", verify_consistency(old, new, mth(leaf_hashes[:old]), mth(leaf_hashes[:new]), proof),
              "RFC 9162 consistency verification fails")

    # 6. checkpoint (C2SP signed note)
    cp = v["checkpoint"]
    root = mth(leaf_hashes)
    eq("checkpoint.tree_size", len(leaf_hashes), cp["tree_size"])
    eq("checkpoint.root", root.hex(), cp["root_hex"])
    eq("checkpoint.body", f"{origin}\n{cp['tree_size']}\n{base64.b64encode(root).decode()}\n", cp["body"])
    # The signature is checked over the stored body, so a root mismatch shows up once above.
    body, note = cp["body"], cp["note"]
    check("checkpoint.note_prefix", note.startswith(body + "\n"), "note does not start with body + blank line")
    sigs = [ln[2:] for ln in note[len(body) + 1:].split("\n") if ln.startswith("\u2014 ")]
    mine = [s.split(" ", 1)[1] for s in sigs if s.split(" ", 1)[0] == origin]
    check("checkpoint.sig_line", len(mine) == 1, f"want one signature line by {origin!r}, got {sigs!r}")
    if mine:
        blob = b64d(mine[0])
        eq("checkpoint.sig_len", len(blob), 68)
        eq("checkpoint.sig_key_id", blob[:4].hex(), led_kid.hex())
        check("checkpoint.signature", ed25519_ok(led_pk, blob[4:], body.encode()), "ed25519 over body fails")

    # 7. negative: one flipped bit must change both the root and the chain
    if leaves:
        j = len(leaves) // 2
        bad = bytearray(leaves[j])
        bad[10] ^= 0x01  # a bit inside the seq field
        hashes = leaf_hashes[:j] + [leaf_hash(bytes(bad))] + leaf_hashes[j + 1:]
        check("negative.root_differs", mth(hashes) != h(cp["root_hex"]), "flipped leaf kept the root")
        c = bytes(32)
        for k, leaf in enumerate(leaves):
            c = chain_hash(c, bytes(bad) if k == j else leaf)
        check("negative.chain_differs", c != h(v["entries"][-1]["chain_hash_hex"]), "flipped leaf kept the chain")

    # 8. payloads the ledger writes itself: RFC 8785 canonical JSON
    p = v.get("payloads")
    check("payloads.present", p is not None, "no `payloads` section")
    if p:
        rec = p["ledger_record"]
        payload = rec["payload"].encode()
        eq("ledger_record.canonical", jcs(json.loads(payload)).encode(), payload)
        eq("ledger_record.payload_sha256", sha256(payload).hex(), rec["payload_sha256_hex"])
        envelope = rec["envelope"].encode()
        eq("ledger_record.envelope_sha256", sha256(envelope).hex(), rec["envelope_sha256_hex"])
        env = json.loads(envelope)
        eq("ledger_record.envelope_payload", b64d(env["payload"]), payload)
        check("ledger_record.signature",
              any(ed25519_ok(led_pk, b64d(s["sig"]), pae(env["payloadType"], payload)) for s in env["signatures"]),
              "no signature verifies with the ledger key")
        eq("ledger_record.key_id", rec["producer_key_id_hex"], sha256(led_pk).hex())
        opa = p["opa_mapped"]
        mapped, raw, record = opa["payload"].encode(), opa["raw"].encode(), opa["record"].encode()
        eq("opa_mapped.canonical", jcs(json.loads(mapped)).encode(), mapped)
        eq("opa_mapped.payload_sha256", sha256(mapped).hex(), opa["payload_sha256_hex"])
        eq("opa_mapped.record_sha256", sha256(record).hex(), opa["record_sha256_hex"])
        check("opa_mapped.raw_embedded", b'"raw":' + raw in record, "the stored record does not embed the raw event byte for byte")
        eq("opa_mapped.record_payload", b64d(json.loads(record)["payload"]), mapped)
        eq("opa_mapped.raw_sha256", json.loads(mapped)["source"]["raw_sha256"], sha256(raw).hex())


def jcs(value):
    """RFC 8785 for the values in these payloads (no floats): members sorted
    by UTF-16 code units, strings escaped as JSON requires and no more."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + jcs(x) for k, x in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(x) for x in value) + "]"
    if isinstance(value, float):
        raise ValueError("floats are not expected in these payloads")
    return json.dumps(value, ensure_ascii=False)


if __name__ == "__main__":
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
    except Exception as err:  # malformed file: count it, don't hide it
        check("vectors.load", False, f"{type(err).__name__}: {err}")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)
