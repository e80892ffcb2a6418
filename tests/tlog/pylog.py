#!/usr/bin/env python3
"""A tiny RFC 6962 log in Python, to test someone else's C2SP tlog-witness.

Written from the C2SP specs (signed-note, tlog-checkpoint, tlog-cosignature,
tlog-witness) and RFC 6962/9162; it shares no code with the project.

Library: `TinyLog(origin, seed, entries)` holds entries, computes roots,
inclusion and consistency proofs, signs checkpoints as Ed25519 signed notes and
submits them to a witness; `verify_cosignature(vkey, text, line)` checks what
comes back.

Commands (each prints one JSON line, or one line for `vkey`; exit 0 on success,
non-zero with a one-line reason on stderr otherwise):

  pylog.py vkey --seed-hex HEX --origin ORIGIN
      print the log's note vkey (`origin+hex8+base64(0x01 || pub)`), to
      configure the witness with before running the scenarios.

  pylog.py scenarios --witness-url URL --witness-vkey VKEY --seed-hex HEX --origin ORIGIN
      run the add-checkpoint scenarios (a..k below) against a witness that
      trusts this log and has no state for ORIGIN yet. URL is the submission
      prefix (`http://127.0.0.1:PORT/PREFIX`; requests go to URL/add-checkpoint).
      Prints {"ok": bool, "scenarios": [{"name", "expected", "actual", ...}]}.

  pylog.py fork-race --witness-url URL --witness-vkey VKEY --seed-hex HEX --origin ORIGIN
                     [--rounds N] [--state-file FILE] [--retry-seconds S]
      each round submits two conflicting extensions of the last cosigned tree
      concurrently; collects every cosignature; at the end checks that all
      cosigned checkpoints lie on one history (no fork) and that the witness
      never reported a size below one it had cosigned (no rollback).
      Survives the witness being killed and restarted (retries with backoff,
      re-learns the size from 409s). --state-file appends one JSON line per
      cosignature received, and is read back at start (to resume) and at the
      end (to check every recorded cosignature, across runs and restarts).
      Prints {"cosigned": n, "forks": 0, "rollbacks": 0, ...}.

  pylog.py self-test
      known answers from the spec summary's worked examples, and proof checks.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from rfc6962 import audit_path, key_id, leaf_hash, mth, node_hash, subproof, verify_consistency, verify_inclusion  # noqa: F401

EM_DASH = "\u2014"


# --- keys, notes, cosignatures -------------------------------------------------


def b64(data):
    return base64.b64encode(data).decode()


def parse_vkey(vkey):
    """`name+hex8+base64(type || pub)` -> (name, key id, type, pub)."""
    name, hex_id, key = vkey.split("+", 2)
    raw = base64.b64decode(key, validate=True)
    kid = bytes.fromhex(hex_id)
    if len(kid) != 4 or kid != key_id(name, raw[0], raw[1:]):
        raise ValueError("vkey key id does not match: %r" % vkey)
    return name, kid, raw[0], raw[1:]


def verify_cosignature(witness_vkey, checkpoint_text, line):
    """Check one `— name base64(keyid || ts || sig)` line -> its timestamp."""
    name, kid, ktype, pub = parse_vkey(witness_vkey)
    if ktype != 0x04 or len(pub) != 32:
        raise ValueError("witness vkey is not an Ed25519 cosignature/v1 key")
    line = line.rstrip("\n")
    prefix = "%s %s " % (EM_DASH, name)
    if not line.startswith(prefix):
        raise ValueError("cosignature line is not by %s: %r" % (name, line[:80]))
    raw = base64.b64decode(line[len(prefix):], validate=True)
    if len(raw) != 76 or raw[:4] != kid:
        raise ValueError("cosignature has the wrong length or key id")
    ts = int.from_bytes(raw[4:12], "big")
    if ts >= 1 << 63:
        raise ValueError("cosignature timestamp out of range")
    msg = b"cosignature/v1\ntime %d\n" % ts + checkpoint_text.encode()
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(raw[12:], msg)
    except InvalidSignature:
        raise ValueError("cosignature does not verify")
    return ts


def cosignature_line(name, seed, checkpoint_text, ts):
    """What a cosignature/v1 witness would answer (for known-answer tests)."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sig = key.sign(b"cosignature/v1\ntime %d\n" % ts + checkpoint_text.encode())
    return "%s %s %s\n" % (EM_DASH, name, b64(key_id(name, 0x04, pub) + ts.to_bytes(8, "big") + sig))


# --- the log -------------------------------------------------------------------


class TinyLog:
    """An in-memory RFC 6962 log with a C2SP checkpoint signer."""

    def __init__(self, origin, seed, entries=()):
        self.origin = origin
        self.seed = bytes(seed)
        self.key = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.pub = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(origin, 0x01, self.pub)
        self.entries = []
        self.hashes = []
        for e in entries:
            self.append(e)

    @property
    def vkey(self):
        return "%s+%s+%s" % (self.origin, self.key_id.hex(), b64(b"\x01" + self.pub))

    @property
    def size(self):
        return len(self.entries)

    def append(self, entry):
        if len(entry) > 0xFFFF:
            raise ValueError("an entry is at most 65535 bytes")
        self.entries.append(bytes(entry))
        self.hashes.append(leaf_hash(entry))

    def root(self, n=None):
        return mth(self.hashes, 0, self.size if n is None else n)

    def inclusion_proof(self, index, n=None):
        n = self.size if n is None else n
        if not 0 <= index < n <= self.size:
            raise ValueError("index out of range")
        return audit_path(self.hashes, index, 0, n)

    def consistency_proof(self, m, n=None):
        """RFC 6962 PROOF(m, D[n]); empty for m == 0 or m == n (as tlog-witness wants)."""
        n = self.size if n is None else n
        if not 0 <= m <= n <= self.size:
            raise ValueError("sizes out of range")
        if m == 0 or m == n:
            return []
        return subproof(self.hashes, m, 0, n, True)

    def checkpoint_text(self, n=None):
        n = self.size if n is None else n
        return "%s\n%d\n%s\n" % (self.origin, n, b64(self.root(n)))

    def sign_note(self, text):
        """`text`, a blank line, and this log's Ed25519 (type 0x01) signature line."""
        sig = self.key.sign(text.encode())
        return "%s\n%s %s %s\n" % (text, EM_DASH, self.origin, b64(self.key_id + sig))

    def checkpoint(self, n=None):
        return self.sign_note(self.checkpoint_text(n))

    def add_checkpoint_body(self, old, n=None, proof=None, note=None):
        """`old N`, the proof lines, a blank line, the signed checkpoint."""
        n = self.size if n is None else n
        if proof is None:
            proof = self.consistency_proof(old, n) if old <= n else []
        if note is None:
            note = self.checkpoint(n)
        return ("old %d\n" % old + "".join(b64(h) + "\n" for h in proof) + "\n" + note).encode()

    def submit(self, witness_url, old, n=None, proof=None, note=None, body=None, timeout=30):
        """POST to <witness_url>/add-checkpoint -> (status, headers, body text)."""
        if body is None:
            body = self.add_checkpoint_body(old, n, proof, note)
        return post(witness_url.rstrip("/") + "/add-checkpoint", body, timeout)


def post(url, body, timeout=30):
    """One POST on a fresh connection -> (status, {lowercase header: value}, text)."""
    u = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", u.path or "/", body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
        resp = conn.getresponse()
        data = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, headers, data.decode("utf-8", "replace")
    finally:
        conn.close()


# --- scenarios -------------------------------------------------------------------


def derive_seed(seed, label):
    return hashlib.sha256(seed + label.encode()).digest()


def run_scenarios(url, witness_vkey, seed, origin):
    log = TinyLog(origin, seed, [b"%s entry %d" % (origin.encode(), i) for i in range(40)])
    # A different history under the same origin and key: a fork from entry 0.
    fork = TinyLog(origin, seed, [b"%s fork %d" % (origin.encode(), i) for i in range(25)])
    stranger = TinyLog(origin + "/unknown", derive_seed(seed, "stranger"), log.entries[:10])
    results = []

    def expect(name, want, got, cosign_of=None, check=None):
        status, headers, body = got
        row = {"name": name, "expected": want, "actual": status}
        ok = status == want
        if ok and cosign_of is not None:
            try:
                lines = [l for l in body.split("\n") if l]
                ts = None
                for l in lines:  # lines by other witness keys would be ignored
                    if l.startswith("%s %s " % (EM_DASH, parse_vkey(witness_vkey)[0])):
                        ts = verify_cosignature(witness_vkey, cosign_of, l)
                if ts is None:
                    raise ValueError("no cosignature line from the witness: %r" % body[:100])
                row["cosignature_ok"] = True
            except ValueError as e:
                ok, row["cosignature_ok"], row["error"] = False, False, str(e)
        if ok and check is not None:
            err = check(headers, body)
            if err:
                ok, row["error"] = False, err
        row["ok"] = ok
        results.append(row)

    def sized_409(want_size):
        def check(headers, body):
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "text/x.tlog.size":
                return "409 content type %r, want text/x.tlog.size" % headers.get("content-type")
            if body != "%d\n" % want_size:
                return "409 body %r, want %r" % (body, "%d\n" % want_size)
            return None

        return check

    expect("a_first_old0_size5", 200, log.submit(url, 0, 5), log.checkpoint_text(5))
    expect("b_grow_5_to_20", 200, log.submit(url, 5, 20), log.checkpoint_text(20))
    expect("c_resubmit_20_old20", 200, log.submit(url, 20, 20), log.checkpoint_text(20))
    expect("d_stale_old5_size30", 409, log.submit(url, 5, 30), check=sized_409(20))
    expect("e1_fork_25_claimed_from_20", 422, fork.submit(url, 20, 25))
    expect("e2_fork_same_size_20", 409, fork.submit(url, 20, 20))
    expect("f_unknown_origin", 404, stranger.submit(url, 0, 10))
    # Flip one byte of the Ed25519 signature (not of the key id): a known key fails.
    note = log.checkpoint(40)
    head, _, sig_b64 = note.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(sig_b64))
    raw[10] ^= 0x01
    bad_note = "%s %s\n" % (head, b64(bytes(raw)))
    expect("g_bad_log_signature", 403, log.submit(url, 20, 40, note=bad_note))
    expect("h_old_greater_than_size", 400, log.submit(url, 25, 20, proof=[]))
    expect("i1_garbage_body", 400, log.submit(url, 0, body=b"this is not a checkpoint \x01\xff\n"))
    expect(
        "i2_bad_proof_line",
        400,
        log.submit(url, 0, body=b"old 20\nnot*base64!\n\n" + log.checkpoint(40).encode()),
    )
    expect("j_grow_20_to_40", 200, log.submit(url, 20, 40), log.checkpoint_text(40))
    expect("k_learn_size_with_old0", 409, log.submit(url, 0, 40), check=sized_409(40))
    return results


# --- fork race -------------------------------------------------------------------


class History:
    """A log history as segments [(label, count)]; entries are derived from labels."""

    def __init__(self, origin, seed, segments):
        self.segments = [list(s) for s in segments]
        entries = [
            ("%s %s %d" % (origin, label, i)).encode() for label, count in self.segments for i in range(count)
        ]
        self.log = TinyLog(origin, seed, entries)

    def extend(self, label, count):
        return History(self.log.origin, self.log.seed, self.segments + [[label, count]])


class Race:
    def __init__(self, args, seed):
        self.url = args.witness_url
        self.vkey = args.witness_vkey
        self.seed = seed
        self.origin = args.origin
        self.state_file = args.state_file
        self.retry_seconds = args.retry_seconds
        self.timeout = args.timeout
        self.lock = threading.Lock()
        self.cosigned = []  # dicts as written to the state file
        self.by_size = {}  # size -> History, for every history submitted
        self.max_cosigned = 0
        self.rollbacks = []
        self.retries = 0
        self.relearned = 0
        self.previous = []
        self.nonce = os.urandom(4).hex()

    def remember(self, hist):
        self.by_size.setdefault(hist.log.size, hist)

    def submit(self, hist, old):
        """Submit hist's checkpoint with `old`, retrying connection failures."""
        floor = self.max_cosigned  # the witness has cosigned at least this much
        delay, deadline = 0.05, time.monotonic() + self.retry_seconds
        body = hist.log.add_checkpoint_body(old)
        while True:
            try:
                status, headers, text = hist.log.submit(self.url, old, body=body, timeout=self.timeout)
                if status < 500:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("witness unreachable or failing (5xx) for %ss" % self.retry_seconds)
            with self.lock:
                self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        if status == 200:
            if old < floor:
                with self.lock:
                    self.rollbacks.append({"accepted_old": old, "cosigned": floor})
            self.record(hist, text)
        elif status == 409 and headers.get("content-type", "").startswith("text/x.tlog.size"):
            seen = int(text.strip())
            with self.lock:
                if seen < self.max_cosigned:
                    self.rollbacks.append({"reported": seen, "cosigned": self.max_cosigned})
        return status, text

    def record(self, hist, body):
        text = hist.log.checkpoint_text()
        name = parse_vkey(self.vkey)[0]
        line = next((l for l in body.split("\n") if l.startswith("%s %s " % (EM_DASH, name))), None)
        if line is None:
            raise RuntimeError("200 without a cosignature line: %r" % body[:100])
        ts = verify_cosignature(self.vkey, text, line)
        rec = {
            "origin": self.origin,
            "witness_vkey": self.vkey,
            "size": hist.log.size,
            "root": b64(hist.log.root()),
            "segments": hist.segments,
            "checkpoint": text,
            "cosignature": line,
            "timestamp": ts,
        }
        with self.lock:
            self.cosigned.append(rec)
            self.max_cosigned = max(self.max_cosigned, hist.log.size)
            if self.state_file:
                with open(self.state_file, "a") as f:
                    f.write(json.dumps(rec, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())

    def learn(self, hist):
        """The witness's size, from a 409 to `old 0` (or a 200 if it had none)."""
        status, text = self.submit(hist, 0)
        if status == 200:
            return hist.log.size
        if status != 409:
            raise RuntimeError("probe with old 0 got %d: %r" % (status, text[:100]))
        size = int(text.strip())
        if size not in self.by_size:
            raise RuntimeError("witness holds size %d for this origin, from no history we know" % size)
        return size

    def previous_records(self):
        if not self.state_file or not os.path.exists(self.state_file):
            return []
        with open(self.state_file) as f:
            recs = [json.loads(l) for l in f if l.strip()]
        return [r for r in recs if r["origin"] == self.origin and r["witness_vkey"] == self.vkey]

    def run(self, rounds):
        """Race `rounds` times; returns normally or raises on a broken exchange."""
        self.previous = self.previous_records()
        for r in self.previous:  # resume: any history this file recorded can be rebuilt
            self.remember(History(self.origin, self.seed, r["segments"]))
            self.max_cosigned = max(self.max_cosigned, r["size"])
        if self.previous:
            start = self.by_size[max(self.by_size)]
        else:
            start = History(self.origin, self.seed, [["base-" + self.nonce, 8]])
            self.remember(start)
        cur = self.by_size[self.learn(start)]
        for rnd in range(rounds):
            # Every history submitted gets a size no other one has, so a size
            # the witness reports (409) names exactly one history.
            first = max(max(self.by_size) + 1, cur.log.size + 1)
            a = cur.extend("r%d-a-%s" % (rnd, self.nonce), first - cur.log.size)
            b = cur.extend("r%d-b-%s" % (rnd, self.nonce), first + 1 - cur.log.size)
            self.remember(a)
            self.remember(b)
            old = cur.log.size
            outcome, errors = {}, []
            gate = threading.Barrier(2)

            def go(tag, hist):
                try:
                    gate.wait()
                    outcome[tag] = self.submit(hist, old)[0]
                except Exception as e:  # reported after the round
                    errors.append("%s: %s" % (tag, e))

            threads = [threading.Thread(target=go, args=(t, h)) for t, h in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise RuntimeError("round %d: %s" % (rnd, "; ".join(errors)))
            odd = {t: s for t, s in outcome.items() if s not in (200, 409)}
            if odd:
                raise RuntimeError("round %d: unexpected answers %s" % (rnd, odd))
            winners = [h for t, h in (("a", a), ("b", b)) if outcome.get(t) == 200]
            if winners:
                cur = max(winners, key=lambda h: h.log.size)
                continue
            # Nobody got a 200 (a restart ate the answer): ask the witness.
            self.relearned += 1
            cur = self.by_size[self.learn(cur)]

def check_records(records, vkey, seed):
    """Every cosigned (size, root) must be a prefix of every larger one."""
    forks = []
    for r in records:
        verify_cosignature(vkey, r["checkpoint"], r["cosignature"])
    recs = sorted(records, key=lambda r: r["size"])
    for lo, hi in zip(recs, recs[1:]):
        hist = History(hi["origin"], seed, hi["segments"])
        if b64(hist.log.root(hi["size"])) != hi["root"]:
            raise RuntimeError("record at size %d does not match its own history" % hi["size"])
        if b64(hist.log.root(lo["size"])) != lo["root"]:
            forks.append({"size": lo["size"], "root": lo["root"], "larger": hi["size"]})
    return forks


# --- known answers ---------------------------------------------------------------


def self_test():
    # Section 3: the three-entry tree, its bundle, its leaf hashes and root.
    three = [b"entry one", b"entry two", b"entry three"]
    log = TinyLog("example.com/behind-the-sofa", bytes(range(0x20, 0x40)), three)
    bundle = b"".join(len(e).to_bytes(2, "big") + e for e in three)
    assert bundle.hex() == (
        "0009656e747279206f6e650009656e7472792074776f000b656e747279207468726565"
    ) and len(bundle) == 35
    assert log.hashes[0].hex().startswith("7bd61356e3269b4b")
    assert b64(log.root()) == "2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw="
    # Section 4: the log's vkey and signature line.
    assert log.vkey == "example.com/behind-the-sofa+13e30ba2+ASmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X"
    text = log.checkpoint_text()
    assert text == "example.com/behind-the-sofa\n3\n2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw=\n"
    log_line = (
        EM_DASH + " example.com/behind-the-sofa E+MLoo7Sh7opSZApJkLDm8y1veqJ4ITuCwjJ0RdhkXfMUJd7c8Y0AqFginZf"
        "romQitPjsk5SJzCVsNGQKoTJ0VVt4gU=\n"
    )
    assert log.checkpoint() == text + "\n" + log_line
    # Section 4: the witness key, its ids and the cosignature line at 1679315147.
    wseed = bytes(range(0x20))
    wpub = Ed25519PrivateKey.from_private_bytes(wseed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert wpub.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert key_id("witness.example/w1", 0x04, wpub).hex() == "e75f6532"
    assert key_id("witness.example/w1", 0x01, wpub).hex() == "3218362d"
    wvkey = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    assert parse_vkey(wvkey)[3] == wpub
    assert 1679315147 .to_bytes(8, "big").hex() == "00000000641850cb"
    cosig = (
        EM_DASH + " witness.example/w1 519lMgAAAABkGFDL6SQNTOyw7DrXj7sup7RyppJdAFetkctYUFOg8cI64W"
        "VRIzoXrYf6LTEYcQLbYCg4dqYLLi/fX7mRHFZdAuYzAA==\n"
    )
    assert cosignature_line("witness.example/w1", wseed, text, 1679315147) == cosig
    assert verify_cosignature(wvkey, text, cosig) == 1679315147
    try:
        verify_cosignature(wvkey, text.replace("\n3\n", "\n4\n"), cosig)
        raise AssertionError("a cosignature over other text verified")
    except ValueError:
        pass
    # Section 5: the add-checkpoint example body (old 2, one proof line).
    body = log.add_checkpoint_body(2).decode()
    assert body == "old 2\nz5+/Suf01D+ZU3Z1c5nz+76Hwo9LkU70hKcuiwOAXdg=\n\n" + text + "\n" + log_line, body
    # Section 7: the tlog-proof example, index 2 of the three-entry tree.
    assert [b64(h) for h in log.inclusion_proof(2)] == ["v/hH1EAhhZS94gB+wee4jbbhRa8Gk7xtRgyxWRlZ/mY="]
    # Proofs against the RFC 9162 verifiers, for every pair up to 40 leaves.
    big = TinyLog("t", bytes(32), [b"%d" % i for i in range(40)])
    for n in range(1, 41):
        root = big.root(n)
        for i in range(n):
            assert verify_inclusion(i, n, big.hashes[i], root, big.inclusion_proof(i, n)), (i, n)
            assert not verify_inclusion(i, n, big.hashes[(i + 1) % n], root, big.inclusion_proof(i, n)) or n == 1
        for m in range(1, n + 1):
            proof = big.consistency_proof(m, n)
            assert verify_consistency(m, n, big.root(m), root, proof), (m, n)
            if m < n:
                assert not verify_consistency(m, n, big.root(m), big.root(n - 1), proof), (m, n)
                assert not verify_consistency(m, n, big.root(m), root, proof[:-1]), (m, n)
    print("pylog self-test: ok")


# --- command line ----------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("vkey")
    p.add_argument("--seed-hex", required=True)
    p.add_argument("--origin", required=True)
    for name in ("scenarios", "fork-race"):
        p = sub.add_parser(name)
        p.add_argument("--witness-url", required=True, help="submission prefix, http://HOST:PORT[/PREFIX]")
        p.add_argument("--witness-vkey", required=True)
        p.add_argument("--seed-hex", required=True)
        p.add_argument("--origin", required=True)
        p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
        if name == "fork-race":
            p.add_argument("--rounds", type=int, default=20)
            p.add_argument("--state-file", help="append every cosignature received (JSON lines)")
            p.add_argument("--retry-seconds", type=float, default=60.0, help="give up after this long unreachable")
    sub.add_parser("self-test")
    # `--self-test` is accepted too, for symmetry with the other scripts.
    argv = ["self-test" if a == "--self-test" else a for a in sys.argv[1:]]
    args = ap.parse_args(argv)
    try:
        if args.cmd == "self-test":
            self_test()
            return 0
        seed = bytes.fromhex(args.seed_hex)
        if len(seed) != 32:
            raise ValueError("--seed-hex must be 64 hex digits")
        if args.cmd == "vkey":
            print(TinyLog(args.origin, seed).vkey)
            return 0
        if args.cmd == "scenarios":
            results = run_scenarios(args.witness_url, args.witness_vkey, seed, args.origin)
            ok = all(r["ok"] for r in results)
            print(json.dumps({"ok": ok, "scenarios": results}))
            if not ok:
                bad = [r["name"] for r in results if not r["ok"]]
                sys.stderr.write("pylog: scenarios failed: %s\n" % ", ".join(bad))
                return 1
            return 0
        race = Race(args, seed)
        error = None
        try:
            race.run(args.rounds)
        except (RuntimeError, ValueError, OSError, http.client.HTTPException) as e:
            error = str(e)  # still check what was cosigned so far
        records = race.previous + race.cosigned
        forks = check_records(records, args.witness_vkey, seed)
        summary = {
            "cosigned": len(race.cosigned),
            "cosigned_total": len(records),
            "forks": len(forks),
            "rollbacks": len(race.rollbacks),
            "rounds": args.rounds,
            "retries": race.retries,
            "relearned": race.relearned,
            "witness_size": race.max_cosigned,
            "error": error,
        }
        print(json.dumps(summary))
        if forks or race.rollbacks:
            sys.stderr.write(
                "pylog: witness cosigned %d fork(s) and rolled back %d time(s), first: %s\n"
                % (len(forks), len(race.rollbacks), json.dumps((forks + race.rollbacks)[:2]))
            )
            return 1
        if error:
            sys.stderr.write("pylog: fork-race: %s\n" % error)
            return 1
        if not race.cosigned:
            sys.stderr.write("pylog: no cosignature received\n")
            return 1
        return 0
    except AssertionError as e:
        tb = e.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        sys.stderr.write("pylog: self-test failed at line %d %s\n" % (tb.tb_lineno, e))
        return 1
    except (ValueError, RuntimeError, OSError, http.client.HTTPException) as e:
        sys.stderr.write("pylog: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
