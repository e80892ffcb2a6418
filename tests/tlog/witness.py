#!/usr/bin/env python3
"""A small C2SP tlog-witness (c2sp.org/tlog-witness), written from the spec.

It is a test peer for logs that submit checkpoints to witnesses: it shares no
code with the project, and its failure modes can be switched on.

Usage:
  python3 tests/tlog/witness.py --listen 127.0.0.1:0 --name NAME --seed-hex 64HEX \
      --log LOG_VKEY [--log LOG_VKEY ...] --state FILE \
      [--prefix /PREFIX] [--mode honest|garbage|badsig|slow] [--slow-ms 3000] [--verbose]
  python3 tests/tlog/witness.py --self-test

On start it prints exactly one line to stdout, `listening <port> <witness vkey>`,
where the vkey is the cosignature/v1 one (`name+hex8+base64(0x04 || pub)`).

Routes:
  POST <prefix>/add-checkpoint   C2SP tlog-witness; checks, in the spec's order:
      unparseable body -> 400; origin not configured -> 404; no trusted log
      signature verifies (or a trusted key's signature fails) -> 403;
      old > size -> 400; old != stored size -> 409 (text/x.tlog.size, "<size>\n");
      consistency proof fails, or is not empty for old 0 / old == size -> 422;
      old == size but the root differs -> 409; otherwise the new size and root
      are stored durably, then 200 with one cosignature line.
  GET /healthz                   200 "ok\n" (readiness polling)

Modes (what a 200 carries; every other answer is honest):
  honest   a valid Ed25519 cosignature/v1 line
  garbage  random junk text
  badsig   a well-formed cosignature line whose signature does not verify
  slow     sleep --slow-ms before handling the request, then answer honestly

State (`--state FILE`, JSON {"origins": {origin: {"size": n, "root": b64}}}) is
read at start and rewritten atomically (temp file, fsync, rename, fsync of the
directory) before each 200, so a restarted witness remembers what it cosigned.

Needs: cryptography (Ed25519).
"""
import argparse
import base64
import binascii
import glob
import hashlib
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from rfc6962 import key_id, node_hash, verify_consistency  # noqa: F401

EM_DASH = "\u2014"
MAX_BODY = 1 << 20  # no honest add-checkpoint body comes near this
MAX_PROOF_LINES = 63


class BadRequest(Exception):
    """The request body cannot be parsed: answered with 400."""


# --- keys, vkeys and signed notes (c2sp.org/signed-note) ---------------------


def check_key_name(name):
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise ValueError("bad key name %r" % name)


def parse_vkey(vkey):
    """`name+hex8+base64(type || pub)` -> (name, key id, type, pub)."""
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise ValueError("vkey needs three '+'-separated parts: %r" % vkey)
    name, hex_id, b64 = parts
    check_key_name(name)
    raw = base64.b64decode(b64, validate=True)
    if len(hex_id) != 8 or len(raw) < 2:
        raise ValueError("malformed vkey %r" % vkey)
    kid = bytes.fromhex(hex_id)
    if kid != key_id(name, raw[0], raw[1:]):
        raise ValueError("vkey key id does not match its key: %r" % vkey)
    return name, kid, raw[0], raw[1:]


def b64decode_strict(s):
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest("bad base64 %r: %s" % (s[:80], e))


def parse_decimal(s, what):
    """A decimal with no leading zeroes (`0` alone is fine)."""
    if not s.isascii() or not s.isdigit() or (len(s) > 1 and s[0] == "0"):
        raise BadRequest("bad %s %r" % (what, s[:40]))
    value = int(s)
    if value >= 1 << 63:
        raise BadRequest("%s out of range" % what)
    return value


def parse_note(note):
    """Split a signed note into (signed text, [(name, key id, sig bytes)])."""
    if not note.endswith("\n"):
        raise BadRequest("note does not end in a newline")
    if any(ord(ch) < 0x20 and ch != "\n" or ord(ch) == 0x7F for ch in note):
        raise BadRequest("note contains control characters")
    sep = note.rfind("\n\n")
    if sep < 0:
        raise BadRequest("note has no blank line before its signatures")
    text, block = note[: sep + 1], note[sep + 2 :]
    if not block:
        raise BadRequest("note has no signature lines")
    sigs = []
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise BadRequest("bad signature line %r" % line[:80])
        fields = line[2:].split(" ")
        if len(fields) != 2 or not fields[0]:
            raise BadRequest("bad signature line %r" % line[:80])
        raw = b64decode_strict(fields[1])
        if len(raw) < 5:
            raise BadRequest("signature too short")
        sigs.append((fields[0], raw[:4], raw[4:]))
    return text, sigs


def parse_checkpoint(text):
    """Checkpoint text -> (origin, size, root); extension lines are allowed."""
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(line == "" for line in lines):
        raise BadRequest("checkpoint needs origin, size, root and no empty lines")
    origin = lines[0]
    size = parse_decimal(lines[1], "tree size")
    root = b64decode_strict(lines[2])
    if len(root) != 32:
        raise BadRequest("root hash is not 32 bytes")
    return origin, size, root


def parse_body(body):
    """`old N`, proof lines, blank line, note -> (old, proof, note)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8")
    nl = text.find("\n")
    if nl < 0 or not text.startswith("old "):
        raise BadRequest("body does not start with an `old N` line")
    old = parse_decimal(text[4:nl], "old size")
    pos, proof = nl + 1, []
    while True:
        nl = text.find("\n", pos)
        if nl < 0:
            raise BadRequest("no blank line after the proof")
        line, pos = text[pos:nl], nl + 1
        if line == "":
            break
        h = b64decode_strict(line)
        if len(h) != 32:
            raise BadRequest("proof hash is not 32 bytes")
        proof.append(h)
        if len(proof) > MAX_PROOF_LINES:
            raise BadRequest("more than 63 proof lines")
    return old, proof, text[pos:]


# --- the witness -------------------------------------------------------------


class Witness:
    def __init__(self, name, seed, log_vkeys, state_path, mode="honest", slow_ms=3000):
        check_key_name(name)
        self.name = name
        self.key = Ed25519PrivateKey.from_private_bytes(seed)
        self.pub = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, 0x04, self.pub)
        self.vkey = "%s+%s+%s" % (
            name,
            self.key_id.hex(),
            base64.b64encode(b"\x04" + self.pub).decode(),
        )
        self.mode = mode
        self.slow_ms = slow_ms
        # origin -> [(key id, public key)]; tlog-policy: the vkey name is the origin.
        self.logs = {}
        for vkey in log_vkeys:
            kname, kid, ktype, pub = parse_vkey(vkey)
            if ktype != 0x01 or len(pub) != 32:
                raise ValueError("log vkey is not an Ed25519 note key: %r" % vkey)
            self.logs.setdefault(kname, []).append((kid, Ed25519PublicKey.from_public_bytes(pub)))
        self.state_path = state_path
        self.lock = threading.Lock()
        self.state = self._load_state()
        # Temp files left by a killed predecessor were never renamed: drop them.
        directory, base = os.path.split(os.path.abspath(state_path))
        for leftover in glob.glob(os.path.join(glob.escape(directory), glob.escape(base) + ".tmp.*")):
            os.unlink(leftover)

    def _load_state(self):
        try:
            with open(self.state_path, "rb") as f:
                raw = json.load(f)
        except FileNotFoundError:
            return {}
        state = {}
        for origin, entry in raw.get("origins", {}).items():
            root = base64.b64decode(entry["root"], validate=True)
            state[origin] = (int(entry["size"]), root)
        return state

    def _save_state(self, state):
        """Write the whole state durably: temp file, fsync, rename, fsync dir."""
        data = {
            "origins": {
                o: {"size": s, "root": base64.b64encode(r).decode()} for o, (s, r) in state.items()
            }
        }
        directory = os.path.dirname(os.path.abspath(self.state_path))
        tmp = "%s.tmp.%d.%d" % (self.state_path, os.getpid(), threading.get_ident())
        with open(tmp, "w") as f:
            json.dump(data, f, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def cosign(self, checkpoint_text, timestamp, corrupt=False):
        """The `— name base64(keyid || ts || sig)` line for checkpoint_text."""
        msg = b"cosignature/v1\ntime %d\n" % timestamp + checkpoint_text.encode()
        sig = bytearray(self.key.sign(msg))
        if corrupt:
            sig[7] ^= 0x40
        blob = self.key_id + timestamp.to_bytes(8, "big") + bytes(sig)
        return "%s %s %s\n" % (EM_DASH, self.name, base64.b64encode(blob).decode())

    def garbage(self):
        """Junk of a random kind: noise, a truncated line, or a line by our name."""
        junk = base64.b64encode(secrets.token_bytes(secrets.randbelow(90) + 1)).decode()
        return secrets.choice(
            [
                "%s\n" % junk,  # not a signature line at all
                "%s %s %s\n" % (EM_DASH, self.name, junk),  # our name, wrong length/id
                "%s %s %s" % (EM_DASH, self.name, junk[:10]),  # truncated, no newline
                "",
            ]
        )

    def add_checkpoint(self, body):
        """Handle one add-checkpoint body -> (status, content type, text)."""
        try:
            old, proof, note = parse_body(body)
            text, sigs = parse_note(note)
            origin, size, root = parse_checkpoint(text)
        except BadRequest as e:
            return 400, "text/plain; charset=utf-8", "bad request: %s\n" % e
        keys = self.logs.get(origin)
        if keys is None:
            return 404, "text/plain; charset=utf-8", "unknown origin\n"
        # Unknown (name, key id) pairs are ignored; a known key must verify.
        verified = failed = False
        for name, kid, sig in sigs:
            if name != origin:
                continue
            for known_id, pub in keys:
                if kid != known_id:
                    continue
                try:
                    pub.verify(sig, text.encode())
                    verified = True
                except InvalidSignature:
                    failed = True
        if failed or not verified:
            return 403, "text/plain; charset=utf-8", "no valid log signature\n"
        if old > size:
            return 400, "text/plain; charset=utf-8", "old size is larger than the checkpoint\n"
        with self.lock:
            stored_size, stored_root = self.state.get(origin, (0, None))
            if old != stored_size:
                return 409, "text/x.tlog.size", "%d\n" % stored_size
            if old == 0 or old == size:
                proof_ok = not proof
            else:
                proof_ok = verify_consistency(old, size, stored_root, root, proof)
            if not proof_ok:
                return 422, "text/plain; charset=utf-8", "consistency proof does not verify\n"
            if old == size and stored_root is not None and root != stored_root:
                return 409, "text/plain; charset=utf-8", "same size, different root\n"
            new_state = dict(self.state)
            new_state[origin] = (size, root)
            try:
                self._save_state(new_state)  # durable before the cosignature leaves
            except OSError as e:
                return 500, "text/plain; charset=utf-8", "cannot store state: %s\n" % e
            self.state = new_state
        if self.mode == "garbage":
            return 200, "text/plain; charset=utf-8", self.garbage()
        line = self.cosign(text, int(time.time()), corrupt=self.mode == "badsig")
        return 200, "text/plain; charset=utf-8", line


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (timeout, killed) is not the witness's problem.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec asks of witnesses
    server_version = "pywitness"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("witness: %s\n" % (fmt % args))

    def _answer(self, status, ctype, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self):
        """The request body (Content-Length or chunked), or None if too large."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0"))
        if length > MAX_BODY:
            return None
        return self.rfile.read(length)

    def do_GET(self):
        if self.path == "/healthz":
            self._answer(200, "text/plain; charset=utf-8", "ok\n")
        elif self.path == self.server.prefix + "/add-checkpoint":
            self._answer(405, "text/plain; charset=utf-8", "use POST\n")
        else:
            self._answer(404, "text/plain; charset=utf-8", "not found\n")

    def do_POST(self):
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._answer(400, "text/plain; charset=utf-8", "bad framing\n")
            return
        if self.path != self.server.prefix + "/add-checkpoint":
            self._answer(404, "text/plain; charset=utf-8", "not found\n")
            return
        if body is None:
            self.close_connection = True
            self._answer(413, "text/plain; charset=utf-8", "body too large\n")
            return
        witness = self.server.witness
        if witness.mode == "slow":
            time.sleep(witness.slow_ms / 1000.0)
        self._answer(*witness.add_checkpoint(body))


# --- known answers from the spec summary (section 4) --------------------------


def self_test():
    import tempfile

    seed = bytes(range(32))
    w = Witness("witness.example/w1", seed, [], "/nonexistent/state.json")
    assert w.pub.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert w.vkey == "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4", w.vkey
    assert key_id("witness.example/w1", 0x01, w.pub).hex() == "3218362d"
    assert parse_vkey(w.vkey) == ("witness.example/w1", bytes.fromhex("e75f6532"), 4, w.pub)  # '+' in base64
    text = "example.com/behind-the-sofa\n3\n2pK6kI4YkTU+0t6MLKYgxLov6ysgEIvDnWI7lQsfQtw=\n"
    want = (
        EM_DASH + " witness.example/w1 519lMgAAAABkGFDL6SQNTOyw7DrXj7sup7RyppJdAFetkctYUFOg8cI64W"
        "VRIzoXrYf6LTEYcQLbYCg4dqYLLi/fX7mRHFZdAuYzAA==\n"
    )
    assert w.cosign(text, 1679315147) == want
    assert w.cosign(text, 1679315147, corrupt=True) != want
    # The spec's add-checkpoint example: old 2 with a one-hash proof to size 3.
    log_vkey = "example.com/behind-the-sofa+13e30ba2+ASmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X"
    body = (
        "old 2\nz5+/Suf01D+ZU3Z1c5nz+76Hwo9LkU70hKcuiwOAXdg=\n\n" + text + "\n" + EM_DASH
        + " example.com/behind-the-sofa E+MLoo7Sh7opSZApJkLDm8y1veqJ4ITuCwjJ0RdhkXfMUJd7c8Y0AqFginZf"
        "romQitPjsk5SJzCVsNGQKoTJ0VVt4gU=\n"
    ).encode()
    old, proof, note = parse_body(body)
    _, sigs = parse_note(note)
    assert old == 2 and len(proof) == 1 and len(sigs) == 1
    # Leaves "entry one", "entry two": the size-2 root, then check 2 -> 3.
    lh = [hashlib.sha256(b"\x00" + e).digest() for e in (b"entry one", b"entry two", b"entry three")]
    root2 = node_hash(lh[0], lh[1])
    root3 = base64.b64decode(text.split("\n")[2])
    assert verify_consistency(2, 3, root2, root3, proof)
    assert not verify_consistency(2, 3, lh[0], root3, proof)
    # A witness at size 2 accepts it (the state goes to a temp dir).
    with tempfile.TemporaryDirectory() as d:
        w2 = Witness("witness.example/w1", seed, [log_vkey], os.path.join(d, "state.json"))
        w2.state["example.com/behind-the-sofa"] = (2, root2)
        status, _, line = w2.add_checkpoint(body)
        assert status == 200 and line.startswith(EM_DASH + " witness.example/w1 "), (status, line)
        assert w2.add_checkpoint(body)[:3] == (409, "text/x.tlog.size", "3\n")
        assert Witness("witness.example/w1", seed, [log_vkey], w2.state_path).state == w2.state
        assert w2.add_checkpoint(b"junk")[0] == 400
    print("witness self-test: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks one)")
    ap.add_argument("--name", help="witness key name (the cosignature signer name)")
    ap.add_argument("--seed-hex", help="32-byte Ed25519 private seed, hex")
    ap.add_argument("--log", action="append", default=[], help="trusted log vkey (repeatable)")
    ap.add_argument("--state", help="state file (JSON), read at start, rewritten durably")
    ap.add_argument("--prefix", default="", help="submission prefix, e.g. /witness (default none)")
    ap.add_argument("--mode", choices=["honest", "garbage", "badsig", "slow"], default="honest")
    ap.add_argument("--slow-ms", type=int, default=3000)
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    ap.add_argument("--self-test", action="store_true", help="run known-answer tests and exit")
    args = ap.parse_args()
    try:
        if args.self_test:
            self_test()
            return 0
        if not (args.name and args.seed_hex and args.state):
            raise ValueError("--name, --seed-hex and --state are required")
        seed = bytes.fromhex(args.seed_hex)
        if len(seed) != 32:
            raise ValueError("--seed-hex must be 64 hex digits")
        prefix = args.prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError("--prefix must start with '/'")
        witness = Witness(args.name, seed, args.log, args.state, args.mode, args.slow_ms)
        host, _, port = args.listen.rpartition(":")
        server = Server((host.strip("[]"), int(port)), Handler)
    except (ValueError, OSError, KeyError, AssertionError) as e:
        sys.stderr.write("witness: %s\n" % (e or type(e).__name__))
        return 1
    server.witness = witness
    server.prefix = prefix
    server.verbose = args.verbose
    sys.stdout.write("listening %d %s\n" % (server.server_address[1], witness.vkey))
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
