#!/usr/bin/env python3
"""Auth matrix (issue 12): every HTTP route and the PostgreSQL endpoint, against
every role and against missing, malformed, unknown, revoked and expired tokens.

What it checks:
- HTTP: each route of contract section 4 is called with a plausible request
  (a fresh signed envelope, a gzip OPA chunk, a valid admin body...) so that
  the only reason for a refusal is auth. An allowed role gets a 2xx; a valid
  token without the role gets 403 `forbidden`; no token, `Basic`, an empty
  bearer, non-ASCII or control bytes, a 10 KB token, an unknown token, the
  admin token with one character changed, and revoked and expired tokens of
  every role get 401 `unauthenticated`. Every refusal has the error body
  `{"error":{"code","message"[,"items"]}}`, an `x-request-id`, does not echo
  the token, and changes nothing: the tree size is the same, and a refused
  key/token creation or revocation left the registry as it was.
  `/healthz` and `/readyz` answer 200 whatever token is sent.
- PostgreSQL: user = role, password = token. query and admin log in and run
  SQL; ingest, auditor, a role that does not match the user, and bad, revoked
  and expired tokens are refused (SQLSTATE 28000 for a role, 28P01 for a
  token, read from the wire by a small login client, and psycopg must fail
  too). A logged-in session whose token is revoked or expires fails its next
  statement and is closed (simple and extended query protocol).
- Limits: with `--auth-failures-per-minute-max 5` the 6th failed attempt from
  an address is refused (HTTP 429 `too_many_auth_failures`, PostgreSQL 28000,
  both naming the limit), for both listeners; and `/metrics` counts failures
  as `actlog_auth_failures_total{listener="http"|"pg"}`.
- Secrets: no token secret (every one created or presented, nor 16 characters
  of one) appears in any server's captured stdout or stderr. A token's SHA-256
  may appear (it is in the ledger's `ledger.token_created` records, see
  docs/threat-model.md); that is printed as a note, not a failure.

Run (needs a built binary and psycopg):

    python3 tests/auth_matrix.py

The binary is $ACTLOG_BIN, else ${CARGO_TARGET_DIR:-/var/tmp/actlog-target}/debug/actlog.
Servers listen on 127.0.0.1 only, on ports the OS picks. Prints each failure
and a last line `auth_matrix: N passed, M failed`; exits 1 when M > 0.
"""
import atexit
import base64
import ctypes
import gzip
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "schema/examples/valid/01-authz-decision-agent-tool-allow.json")
ROLES = ["ingest", "query", "auditor", "admin"]
PDP = "am-pdp"
OPA_INSTANCE = "am-opa"
EXPIRY_S = 4  # lifetime of the expiring tokens
CHILDREN = []  # every server process we started; killed on exit
PG_CONNS = []  # every psycopg connection we hold; closed before the servers stop


class Failed(Exception):
    """One case did not hold."""


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class Tally:
    """Counts cases; prints each failure as it happens."""

    def __init__(self):
        self.passed, self.failed, self.notes = 0, [], []

    def case(self, name, fn, *args):
        try:
            fn(*args)
            self.passed += 1
            return True
        except Failed as e:
            self.fail(name, str(e))
        except Exception as e:  # an unexpected error fails the case, not the run
            self.fail(name, f"{type(e).__name__}: {e}")
        return False

    def fail(self, name, msg):
        self.failed.append(f"{name}: {msg}")
        print(f"FAIL {name}: {msg}", flush=True)

    def note(self, msg):
        if msg not in self.notes:
            self.notes.append(msg)


# ---------------------------------------------------------------- processes

def binary_path():
    if os.environ.get("ACTLOG_BIN"):
        return os.environ["ACTLOG_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or "/var/tmp/actlog-target"
    return os.path.join(target, "debug", "actlog")


def die_with_parent():
    # Linux: the server gets SIGKILL if this script dies first (PR_SET_PDEATHSIG).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def kill_children():
    for conn in PG_CONNS:
        try:
            conn.close()
        except Exception:
            pass
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def run(binary, args, stdin=None, timeout=60):
    """Runs one actlog command; returns the CompletedProcess (text)."""
    return subprocess.run([binary, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def run_ok(binary, args, what, stdin=None):
    r = run(binary, args, stdin)
    if r.returncode != 0:
        raise Failed(f"{what} failed (exit {r.returncode}): {r.stderr.strip()[-400:]}")
    return r.stdout.strip()


def slurp(path):
    with open(path, errors="replace") as f:
        return f.read()


class Server:
    """`actlog init` then `actlog serve` on 127.0.0.1 ports the OS picks; logs go to files."""

    def __init__(self, binary, work, name, extra):
        self.binary, self.name = binary, name
        self.data = os.path.join(work, name)
        self.admin = run_ok(binary, ["--data", self.data, "init"], f"{name}: init")
        check(self.admin.startswith("actlog_") and "\n" not in self.admin,
              f"{name}: init printed {self.admin!r}, not one token line")
        self.out, self.err = os.path.join(work, f"{name}.out"), os.path.join(work, f"{name}.err")
        args = [binary, "--data", self.data, "serve", "--listen", "127.0.0.1:0", "--pg-listen", "127.0.0.1:0",
                "--checkpoint-interval-ms", "200", *extra]
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                         preexec_fn=die_with_parent)
        CHILDREN.append(self.proc)
        self.port = self.pg_port = None

    def wait_serving(self, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = slurp(self.err)
            http_m = re.search(r"serving ledger .* on http://127\.0\.0\.1:(\d+)", text)
            pg_m = re.search(r"PostgreSQL wire protocol on 127\.0\.0\.1:(\d+)", text)
            if http_m and pg_m:
                self.port, self.pg_port = int(http_m.group(1)), int(pg_m.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                return
            time.sleep(0.05)
        raise Failed(f"{self.name}: not serving (exit {self.proc.poll()}): {slurp(self.err)[-600:]}")

    def remote(self):
        return ["--url", self.url, "--token", self.admin]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self):
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self):
        return slurp(self.out) + slurp(self.err)


# ---------------------------------------------------------------- HTTP

class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def short(self):
        return f"{self.status} {self.text()[:300]}"


def request(port, method, path, auth=None, headers=None, body=None):
    """One request on a fresh connection. `auth` is the Authorization value (str or bytes) or None."""
    h = dict(headers or {})
    if auth is not None:
        h["Authorization"] = auth
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def bearer(token):
    return f"Bearer {token}"


def check_error_body(r, code):
    """The contract's error body with `code`; `items`, when present, a list."""
    try:
        body = r.json()
    except ValueError:
        raise Failed(f"body is not JSON: {r.short()}")
    err = body.get("error") if isinstance(body, dict) else None
    check(isinstance(err, dict), f"no error object: {r.short()}")
    check(err.get("code") == code, f"error.code {err.get('code')!r}, expected {code!r}: {r.short()}")
    check(isinstance(err.get("message"), str) and err["message"], f"no error.message: {r.short()}")
    check("items" not in err or isinstance(err["items"], list), f"error.items not a list: {r.short()}")
    check(r.headers.get("x-request-id"), f"no x-request-id header: {r.short()}")


# ---------------------------------------------------------------- PostgreSQL

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_message(s):
    head = recv_exact(s, 5)
    if head is None:
        return None, None
    body = recv_exact(s, struct.unpack("!i", head[1:])[0] - 4)
    return (head[:1], body) if body is not None else (None, None)


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def drain(s):
    """What the server sends before closing the socket: (closed within 3 s, the bytes)."""
    s.settimeout(3)
    data, deadline = b"", time.monotonic() + 3
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                return True, data
            data += chunk
    except socket.timeout:
        return False, data
    except OSError:
        return True, data
    return False, data


class Login:
    def __init__(self, outcome, sqlstate=None, message="", closed=None, after=b""):
        self.outcome, self.sqlstate, self.message, self.closed = outcome, sqlstate, message, closed
        self.after = after  # bytes the server sent after the ErrorResponse

    def __str__(self):
        return f"{self.outcome} {self.sqlstate or ''} {self.message!r}".strip()


def pg_login(port, user, password):
    """A cleartext-password login by hand, to read the SQLSTATE that libpq hides at connect time."""
    if isinstance(password, str):
        password = password.encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            params = b"user\0" + user.encode() + b"\0database\0actlog\0\0"
            s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
            while True:
                kind, body = read_message(s)
                if kind is None:
                    return Login("closed", message="the server closed the connection")
                if kind == b"E":
                    f = error_fields(body)
                    return Login("error", f.get("C"), f.get("M", ""), *drain(s))
                if kind != b"R":
                    continue
                code = struct.unpack("!i", body[:4])[0]
                if code == 3:
                    s.sendall(b"p" + struct.pack("!i", 4 + len(password) + 1) + password + b"\0")
                elif code == 0:
                    s.sendall(b"X" + struct.pack("!i", 4))
                    return Login("ok")
                else:
                    return Login("unexpected", message=f"authentication request {code}")
    except OSError as e:
        return Login("closed", message=f"{type(e).__name__}: {e}")


def pg_connect(port, user, password):
    conn = psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="actlog",
                           sslmode="disable", connect_timeout=10, autocommit=True)
    PG_CONNS.append(conn)
    return conn


def pg_scalar(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


# ---------------------------------------------------------------- events

def make_events(n):
    """n decisions from the example, each with a unique id, for PDP."""
    with open(EXAMPLE) as f:
        base = json.load(f)
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    out = []
    for i in range(n):
        ev = json.loads(json.dumps(base))
        ev["event_id"] = str(uuid.uuid4())
        ev["event_time"] = (t0 + timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ev["pdp"]["id"] = PDP
        ev["correlation"]["request_id"] = str(uuid.uuid4())
        out.append((ev["event_id"], json.dumps(ev, separators=(",", ":"))))
    return out


def opa_event(decision_id):
    return {
        "labels": {"id": OPA_INSTANCE, "version": "1.4.2"},
        "decision_id": decision_id,
        "bundles": {"authz": {"revision": "r1"}},
        "path": "mcp/authz/allow",
        "input": {
            "subject": {"type": "user", "id": "alice",
                        "properties": {"act": {"sub": "agent-7", "iss": "https://as.example", "sub_profile": "ai_agent"}}},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "book_flight"},
            "context": {"session_id": "sess-1", "task_id": "task-9"},
        },
        "result": True,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "req_id": 1,
    }


# ---------------------------------------------------------------- the ledger under test

class Matrix:
    """The main server and everything the cases share."""

    def __init__(self, binary, server, tally):
        self.binary, self.s, self.t = binary, server, tally
        self.secrets = [("admin token", server.admin)]  # (label, secret) to look for in the logs
        self.tokens = {}  # role -> valid token
        self.envelopes = []  # (event_id, envelope line), consumed by appends
        self.http_401 = 0  # 401s seen from the main server
        self.pg_failures = 0  # logins the main server refused at the auth check
        self.expires_ok = False
        self.expiring = {}  # role -> token that expires at most EXPIRY_S after expiring_at
        self.expiring_at = 0.0
        self.revoked = {}  # role -> revoked token

    def call(self, method, path, auth=None, headers=None, body=None):
        r = request(self.s.port, method, path, auth, headers, body)
        if r.status == 401:
            self.http_401 += 1
        return r

    def admin_get(self, path):
        r = request(self.s.port, "GET", path, bearer(self.s.admin))
        check(r.status == 200, f"GET {path} as admin: {r.short()}")
        return r.json()

    def tree_size(self):
        r = request(self.s.port, "GET", "/readyz")
        if r.status == 200:
            return r.json()["tree_size"]
        return self.admin_get("/v1/log")["tree_size"]

    def keep(self, label, secret):
        self.secrets.append((label, secret))
        return secret

    def create_token(self, role, name, extra=()):
        args = ["tokens", "create", "--role", role, "--name", name, *extra, *self.s.remote()]
        token = run_ok(self.binary, args, f"tokens create {name}")
        check(token.startswith("actlog_") and "\n" not in token, f"tokens create {name} printed {token!r}")
        return self.keep(f"token {name}", token)

    def revoke_token(self, name):
        run_ok(self.binary, ["tokens", "revoke", name, *self.s.remote()], f"tokens revoke {name}")

    def next_envelope(self):
        check(self.envelopes, "ran out of pre-signed envelopes")
        return self.envelopes.pop()

    def key_entry(self, name):
        return next((k for k in self.admin_get("/v1/keys")["keys"] if k["name"] == name), None)

    def token_entry(self, name):
        return next((k for k in self.admin_get("/v1/tokens")["tokens"] if k["name"] == name), None)

    def event_exists(self, event_id):
        r = request(self.s.port, "GET", f"/v1/events/by-id/{event_id}", bearer(self.s.admin))
        check(r.status in (200, 404), f"GET by-id as admin: {r.short()}")
        return r.status == 200


def setup(m, work):
    """Keys, tokens, signed envelopes and one stored event (seq0)."""
    b, s = m.binary, m.s
    keys = os.path.join(work, "keys")
    os.mkdir(keys)
    pubs = [run_ok(b, ["keygen", "--out", os.path.join(keys, f"k{i}.key")], "keygen") for i in range(3)]
    m.pub_other = pubs[1]  # for POST /v1/keys
    run_ok(b, ["keys", "add", "am-pdp-key", "--public-key", pubs[0], "--pdp", PDP, *s.remote()], "keys add")
    run_ok(b, ["keys", "add", "am-victim-key", "--public-key", pubs[2], "--pdp", "am-victim", *s.remote()],
           "keys add victim")
    for role in ["ingest", "query", "auditor"]:
        m.tokens[role] = m.create_token(role, f"am-{role}")
    m.tokens["admin"] = s.admin
    m.victim = m.create_token("query", "am-victim-token")
    events = make_events(64)
    signed = run_ok(b, ["sign", "--key", os.path.join(keys, "k0.key")], "sign",
                    stdin="".join(line + "\n" for _, line in events)).splitlines()
    check(len(signed) == len(events), f"sign wrote {len(signed)} envelopes for {len(events)} events")
    m.envelopes = [(eid, env) for (eid, _), env in zip(events, signed)]
    eid, line = m.next_envelope()
    r = m.call("POST", "/v1/events", bearer(m.tokens["ingest"]), {"Content-Type": "application/x-ndjson"},
               (line + "\n").encode())
    check(r.status == 200, f"first append: {r.short()}")
    m.seq0, m.eid0 = r.json()["receipts"][0]["seq"], eid


def probe(m, role, token):
    """A request `role` may make, with `token`; returns the reply."""
    if role == "ingest":
        return m.call("POST", "/v1/events", bearer(token), {"Content-Type": "application/json"}, b"[]")
    if role == "admin":
        return m.call("GET", "/v1/tokens", bearer(token))
    return m.call("GET", f"/v1/events/{m.seq0}", bearer(token))


def check_probe_works(m, role, token, when):
    r = probe(m, role, token)
    check(r.status not in (401, 403) and r.status < 500, f"{role} token {when}: {r.short()}")


# ---------------------------------------------------------------- expiring and revoked tokens

def check_expires_flag(m):
    r = run(m.binary, ["tokens", "create", "--help"])
    m.expires_ok = "--expires-in" in r.stdout + r.stderr
    check(m.expires_ok, "expires-in not implemented: `actlog tokens create --help` has no --expires-in")


def create_expiring(m):
    """One token per role that expires EXPIRY_S after creation, each checked at once to work."""
    for role in ROLES:
        name = f"am-expiring-{role}"
        m.expiring[role] = m.create_token(role, name, ["--expires-in", f"{EXPIRY_S}s"])
        m.expiring_at = time.monotonic()  # the last one made expires last
        m.t.case(f"expiring {role} token works before it expires", check_probe_works, m, role,
                 m.expiring[role], "right after creation")


def setup_expiring(m):
    """Expiring tokens and sessions, or a failure saying why there are none."""
    if not m.t.case("tokens create has --expires-in", check_expires_flag, m):
        m.t.fail("http requests with expired tokens", "expires-in not implemented: cannot make an expired token")
        return {}
    if not m.t.case(f"tokens create --expires-in {EXPIRY_S}s for every role", create_expiring, m):
        m.expires_ok, m.expiring = False, {}
        m.t.fail("http requests with expired tokens", "expires-in failed: cannot make an expired token")
        return {}
    m.t.case("tokens create --expires-in soon is refused", check_bad_duration, m)
    return open_expiring_sessions(m)


def check_bad_duration(m):
    r = run(m.binary, ["tokens", "create", "--role", "query", "--name", "am-bad-duration",
                       "--expires-in", "soon", *m.s.remote()])
    check(r.returncode != 0 and not r.stdout.strip(),
          f"--expires-in soon: exit {r.returncode}, stdout {r.stdout.strip()!r}")
    check(m.token_entry("am-bad-duration") is None, "--expires-in soon still created the token")


def wait_expired(m):
    left = m.expiring_at + EXPIRY_S + 1.5 - time.monotonic()
    if left > 0:
        time.sleep(left)


def create_revoked(m):
    for role in ROLES:
        name = f"am-revoked-{role}"
        token = m.create_token(role, name)
        m.t.case(f"{role} token works before it is revoked", check_probe_works, m, role, token, "before revocation")
        m.revoke_token(name)
        m.revoked[role] = token


# ---------------------------------------------------------------- routes

class Req:
    def __init__(self, path, headers=None, body=None, event_id=None):
        self.path, self.headers, self.body, self.event_id = path, headers or {}, body, event_id


class Route:
    def __init__(self, method, name, allowed, build, ok=None, unchanged=None):
        self.method, self.name, self.allowed = method, name, set(allowed) | {"admin"}
        self.build, self.ok, self.unchanged = build, ok, unchanged


def build_events(m, tag):
    eid, line = m.next_envelope()
    return Req("/v1/events", {"Content-Type": "application/x-ndjson"}, (line + "\n").encode(), eid)


def build_opa(path):
    def build(m, tag):
        decision_id = str(uuid.uuid4())
        body = gzip.compress(json.dumps([opa_event(decision_id)]).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return Req(path, headers, body, f"opa:{OPA_INSTANCE}:{decision_id}")
    return build


def ok_appended(m, r, req, before):
    receipts = r.json().get("receipts", [])
    check(len(receipts) == 1 and receipts[0].get("event_id") == req.event_id and not receipts[0].get("duplicate"),
          f"receipts {receipts}")
    check(m.tree_size() == before + 1, "the tree did not grow by one")


def unchanged_event(m, req):
    check(not m.event_exists(req.event_id), f"refused append stored {req.event_id}")


def json_req(path, value):
    return Req(path, {"Content-Type": "application/json"}, json.dumps(value).encode())


def build_add_key(m, tag):
    return json_req("/v1/keys", {"name": f"am-key-{tag}", "public_key": m.pub_other, "pdp_id": "am-other"})


def ok_add_key(m, r, req, before):
    check(r.status == 201, f"expected 201: {r.short()}")
    check(m.key_entry(json.loads(req.body)["name"]) is not None, "the key is not listed")


def unchanged_keys(m, req):
    name = json.loads(req.body)["name"]
    check(m.key_entry(name) is None, f"refused POST /v1/keys registered {name}")


def build_add_token(m, tag):
    # Refused callers ask for an admin token: an escalation attempt.
    role = "query" if tag == "admin" else "admin"
    return json_req("/v1/tokens", {"role": role, "name": f"am-tok-{tag}"})


def ok_add_token(m, r, req, before):
    check(r.status == 201, f"expected 201: {r.short()}")
    token = m.keep("token from POST /v1/tokens", r.json()["token"])
    probe_r = m.call("GET", f"/v1/events/{m.seq0}", bearer(token))
    check(probe_r.status == 200, f"the new query token does not work: {probe_r.short()}")


def unchanged_tokens(m, req):
    name = json.loads(req.body)["name"]
    check(m.token_entry(name) is None, f"refused POST /v1/tokens created {name}")


def ok_revoked_key(m, r, req, before):
    check(m.key_entry("am-victim-key")["revoked_seq"] is not None, "the victim key is not revoked")


def unchanged_victim_key(m, req):
    check(m.key_entry("am-victim-key")["revoked_seq"] is None, "refused revoke revoked the victim key")


def ok_revoked_token(m, r, req, before):
    check(m.token_entry("am-victim-token")["revoked_seq"] is not None, "the victim token is not revoked")
    probe_r = m.call("GET", f"/v1/events/{m.seq0}", bearer(m.victim))
    check(probe_r.status == 401, f"the revoked victim token still works: {probe_r.short()}")


def unchanged_victim_token(m, req):
    check(m.token_entry("am-victim-token")["revoked_seq"] is None, "refused revoke revoked the victim token")
    probe_r = m.call("GET", f"/v1/events/{m.seq0}", bearer(m.victim))
    check(probe_r.status == 200, f"the victim token stopped working: {probe_r.short()}")


def ok_no_secret(m, r, req, before):
    text = r.text()
    leaked = [label for label, s in m.secrets if s in text]
    check(not leaked, f"the listing shows secrets: {leaked}")


def ok_event(m, r, req, before):
    check(r.json().get("event_id") == m.eid0, f"wrong event: {r.short()}")


def get(path_fn):
    return lambda m, tag: Req(path_fn(m))


def routes():
    return [
        Route("POST", "/v1/events", ["ingest"], build_events, ok_appended, unchanged_event),
        Route("POST", "/v1/opa/logs", ["ingest"], build_opa("/v1/opa/logs"), ok_appended, unchanged_event),
        Route("POST", "/v1/opa/logs/{partition}", ["ingest"], build_opa("/v1/opa/logs/am-part"), ok_appended,
              unchanged_event),
        Route("GET", "/v1/events/{seq}", ["query", "auditor"], get(lambda m: f"/v1/events/{m.seq0}"), ok_event),
        Route("GET", "/v1/events/by-id/{event_id}", ["query", "auditor"],
              get(lambda m: f"/v1/events/by-id/{m.eid0}"), ok_event),
        Route("GET", "/v1/chains/{event_id}", ["query", "auditor"], get(lambda m: f"/v1/chains/{m.eid0}")),
        Route("GET", "/v1/log", ["query", "auditor"], get(lambda m: "/v1/log")),
        Route("GET", "/v1/checkpoint", ["query", "auditor"], get(lambda m: "/v1/checkpoint")),
        Route("GET", "/v1/proofs/inclusion", ["query", "auditor"],
              get(lambda m: f"/v1/proofs/inclusion?seq={m.seq0}&tree_size={m.seq0 + 1}")),
        Route("GET", "/v1/proofs/consistency", ["query", "auditor"],
              get(lambda m: f"/v1/proofs/consistency?old=1&new={m.seq0 + 1}")),
        Route("POST", "/v1/sql", ["query", "auditor"],
              lambda m, tag: json_req("/v1/sql", {"sql": "SELECT count(*) AS n FROM events"})),
        # The console's reads (contract section 13): query or auditor.
        Route("GET", "/v1/search", ["query", "auditor"], get(lambda m: f"/v1/search?q={m.eid0}")),
        Route("GET", "/v1/events", ["query", "auditor"],
              get(lambda m: "/v1/events?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&limit=5")),
        Route("GET", "/v1/principals/{id}", ["query", "auditor"],
              get(lambda m: "/v1/principals/alice?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")),
        Route("GET", "/v1/agents/{id}", ["query", "auditor"],
              get(lambda m: "/v1/agents/a1?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")),
        Route("POST", "/v1/evidence", ["auditor"],
              lambda m, tag: Req("/v1/evidence?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")),
        Route("GET", "/v1/keys", [], get(lambda m: "/v1/keys"), ok_no_secret),
        Route("POST", "/v1/keys", [], build_add_key, ok_add_key, unchanged_keys),
        Route("POST", "/v1/keys/{name}/revoke", [], lambda m, tag: Req("/v1/keys/am-victim-key/revoke"),
              ok_revoked_key, unchanged_victim_key),
        Route("GET", "/v1/tokens", [], get(lambda m: "/v1/tokens"), ok_no_secret),
        Route("POST", "/v1/tokens", [], build_add_token, ok_add_token, unchanged_tokens),
        Route("POST", "/v1/tokens/{name}/revoke", [], lambda m, tag: Req("/v1/tokens/am-victim-token/revoke"),
              ok_revoked_token, unchanged_victim_token),
        Route("GET", "/metrics", ["auditor"], get(lambda m: "/metrics")),
        # The tlog-tiles read API (contract section 11); public only with --public-tlog.
        Route("GET", "/tlog/checkpoint", ["auditor"], get(lambda m: "/tlog/checkpoint")),
        Route("GET", "/tlog/tile/{L}/{N}", ["auditor"], get(lambda m: "/tlog/tile/0/000.p/1")),
        Route("GET", "/tlog/tile/8/{L}/{N}", ["auditor"], get(lambda m: "/tlog/tile/8/0/000.p/1")),
        Route("GET", "/tlog/tile/entries/{N}", ["auditor"], get(lambda m: "/tlog/tile/entries/000.p/1")),
    ]


# ---------------------------------------------------------------- callers

class Caller:
    """Who calls: a valid token with `role`, or a bad credential (`role` None)."""

    def __init__(self, name, auth, role=None, secret=None):
        self.name, self.auth, self.role, self.secret = name, auth, role, secret


def random_token():
    return "actlog_" + secrets.token_urlsafe(32)[:43]


def bad_callers(m):
    admin = m.s.admin
    near = admin[:-1] + ("A" if admin[-1] != "A" else "B")
    unknown, long_token = random_token(), "actlog_" + secrets.token_urlsafe(7680)[:10240]
    nonascii = "actlog_\u00fcn\u00efc\u00f6d\u00e9_" + secrets.token_urlsafe(16)
    control = "actlog_\x01\x7f_" + secrets.token_urlsafe(16)
    basic = base64.b64encode(f"admin:{admin}".encode()).decode()
    for label, s in [("unknown token", unknown), ("near-admin token", near), ("10 KB token", long_token),
                     ("non-ASCII token", nonascii), ("control token", control), ("Basic credentials", basic)]:
        m.keep(label, s)
    return [
        Caller("no-header", None),
        Caller("basic", f"Basic {basic}", secret=basic),
        Caller("empty-bearer", "Bearer "),
        Caller("non-ascii", f"Bearer {nonascii}".encode("utf-8"), secret=nonascii),
        Caller("control-bytes", f"Bearer {control}".encode("utf-8"), secret=control),
        Caller("10kb", bearer(long_token), secret=long_token),
        Caller("unknown", bearer(unknown), secret=unknown),
        Caller("near-admin", bearer(near), secret=near),
    ]


def callers(m):
    """Weak first, admin last: admin's allowed calls revoke the victims."""
    out = [Caller(role, bearer(m.tokens[role]), role, m.tokens[role]) for role in ["ingest", "query", "auditor"]]
    out += bad_callers(m)
    out += [Caller(f"revoked-{r}", bearer(t), secret=t) for r, t in m.revoked.items()]
    out += [Caller(f"expired-{r}", bearer(t), secret=t) for r, t in m.expiring.items()]
    out.append(Caller("admin", bearer(m.s.admin), "admin", m.s.admin))
    return out


# ---------------------------------------------------------------- HTTP cases

def allowed_case(m, route, caller):
    req = route.build(m, caller.name)
    before = m.tree_size()
    r = m.call(route.method, req.path, caller.auth, req.headers, req.body)
    check(200 <= r.status < 300, f"expected 2xx: {r.short()}")
    if route.ok:
        route.ok(m, r, req, before)


def refused_case(m, route, caller):
    req = route.build(m, caller.name)
    before = m.tree_size()
    r = m.call(route.method, req.path, caller.auth, req.headers, req.body)
    status, code = (403, "forbidden") if caller.role else (401, "unauthenticated")
    if caller.name == "control-bytes" and r.status == 400:
        # hyper refuses a header value with control bytes before any handler runs.
        m.t.note(f"control bytes in Authorization: hyper answers 400 before routing (body {r.text()[:80]!r})")
    else:
        check(r.status == status, f"expected {status}: {r.short()}")
        check_error_body(r, code)
    if caller.secret:
        check(caller.secret not in r.text(), "the response echoes the token")
    check(m.tree_size() == before, f"the tree grew from {before} to {m.tree_size()}")
    if route.unchanged:
        route.unchanged(m, req)


def open_route_case(m, path, caller):
    r = m.call("GET", path, caller.auth)
    if caller.name == "control-bytes" and r.status == 400:
        return
    check(r.status == 200, f"expected 200 without auth: {r.short()}")


def http_matrix(m):
    rs, cs = routes(), callers(m)
    for caller in cs:
        if caller.name.startswith("expired-"):
            wait_expired(m)
        for route in rs:
            allowed = caller.role is not None and caller.role in route.allowed
            fn = allowed_case if allowed else refused_case
            verdict = "allowed" if allowed else "refused"
            m.t.case(f"http {route.method} {route.name} as {caller.name} ({verdict})", fn, m, route, caller)
        for path in ["/healthz", "/readyz"]:
            m.t.case(f"http GET {path} as {caller.name} (open)", open_route_case, m, path, caller)


# ---------------------------------------------------------------- PostgreSQL cases

def pg_allowed_case(m, user, token):
    login = pg_login(m.s.pg_port, user, token)
    check(login.outcome == "ok", f"wire login refused: {login}")
    conn = pg_connect(m.s.pg_port, user, token)
    try:
        check(pg_scalar(conn, "SELECT 1") == 1, "SELECT 1 did not return 1")
        n = pg_scalar(conn, "SELECT count(*) FROM events WHERE seq >= %s", (0,))
        check(n >= 1, f"count(*) FROM events = {n}")
    finally:
        conn.close()


def pg_refused_case(m, user, password, sqlstate):
    """Refused at login: the wire shows `sqlstate` (any failure when None) and closes; psycopg fails too."""
    login = pg_login(m.s.pg_port, user, password)
    if isinstance(password, str) and login.outcome == "error" and login.sqlstate in ("28P01", "28000"):
        m.pg_failures += 1  # (an invalid UTF-8 password is refused before the counter)
    check(login.outcome != "ok", "the login was accepted")
    if sqlstate:
        check(login.outcome == "error" and login.sqlstate == sqlstate, f"expected SQLSTATE {sqlstate}, got {login}")
        check(login.closed, "the connection stayed open after the FATAL error")
        if login.after[:1] == b"Z":
            m.t.note("after a FATAL login error the server sends ReadyForQuery ('Z') before closing; "
                     "PostgreSQL sends nothing after a FATAL")
    if isinstance(password, bytes):
        return  # libpq takes text passwords only
    try:
        conn = pg_connect(m.s.pg_port, user, password)
    except psycopg.Error:
        return
    conn.close()
    raise Failed("psycopg logged in")


def pg_matrix(m):
    t, tok = m.t, m.tokens
    for role in ["query", "admin"]:
        t.case(f"pg user={role} with the {role} token (allowed)", pg_allowed_case, m, role, tok[role])
    refused = [
        ("ingest", tok["ingest"], "28000", "the ingest token"),
        ("auditor", tok["auditor"], "28000", "the auditor token"),
        ("query", tok["admin"], "28000", "the admin token (wrong user)"),
        ("admin", tok["query"], "28000", "the query token (wrong user)"),
        ("query", tok["ingest"], "28000", "the ingest token (wrong user)"),
        ("nobody", tok["query"], "28000", "the query token (unknown user)"),
        ("query", random_token(), "28P01", "an unknown token"),
        ("admin", m.s.admin[:-1] + ("A" if m.s.admin[-1] != "A" else "B"), "28P01", "the near-admin token"),
        ("query", "", "28P01", "an empty password"),
        ("query", "actlog_\u00e9\u00e8_\x01\x7f" + secrets.token_urlsafe(8), "28P01", "non-ASCII and control bytes"),
        ("query", b"actlog_\xff\xfe" + secrets.token_urlsafe(8).encode(), "28P01", "invalid UTF-8"),
        ("query", "actlog_" + secrets.token_urlsafe(7680)[:10240], None, "a 10 KB password"),
        ("query", m.revoked["query"], "28P01", "the revoked query token"),
        ("admin", m.revoked["admin"], "28P01", "the revoked admin token"),
    ]
    for user, pw, state, what in refused:
        if isinstance(pw, str) and len(pw) > 7:
            m.keep(f"pg password: {what}", pw)
        t.case(f"pg user={user} with {what} (refused)", pg_refused_case, m, user, pw, state)
    if not m.expires_ok:
        t.fail("pg login with expired tokens", "expires-in not implemented: cannot make an expired token")
        return
    wait_expired(m)
    for role in ["query", "admin"]:
        t.case(f"pg user={role} with the expired {role} token (refused)", pg_refused_case, m, role,
               m.expiring[role], "28P01")


STATEMENTS = {
    "simple": ("SELECT 1", None),
    "extended": ("SELECT count(*) FROM events WHERE seq >= %s", (0,)),
}


def open_session(m, token, protocol):
    conn = pg_connect(m.s.pg_port, "query", token)
    sql, params = STATEMENTS[protocol]
    pg_scalar(conn, sql, params)
    return conn


def try_statement(conn, sql, params):
    try:
        return f"returned {pg_scalar(conn, sql, params)!r}", None
    except psycopg.Error as e:
        return f"failed ({e.sqlstate or type(e).__name__}: {' '.join(str(e).split())[:120]})", e


def check_session_ended(conn, protocol, why):
    """The next statement fails and the connection is closed, as psycopg sees it."""
    sql, params = STATEMENTS[protocol]
    first, err = try_statement(conn, sql, params)
    closed_then = conn.closed
    second, err2 = try_statement(conn, "SELECT 1", None)
    story = f"after {why}, the next statement {first}, closed={closed_then}; a second one {second}"
    check(err is not None, f"the session outlived {why}: {story}")
    check(closed_then, f"the connection is still open for the client: {story} "
                       "(the server sends ReadyForQuery after its FATAL error, so libpq sees the close only later)")
    check(err2 is not None, f"the session still runs statements: {story}")


def session_revoked_case(m, protocol):
    name = f"am-pg-session-{protocol}"
    token = m.create_token("query", name)
    conn = open_session(m, token, protocol)
    m.revoke_token(name)
    check_session_ended(conn, protocol, "revocation")


def running_statement_revoked_case(m):
    """A statement still running when its token is revoked ends with the
    session (SQLSTATE 28000), not at sql_time_ms."""
    name = "am-pg-running"
    token = m.create_token("query", name)
    conn = open_session(m, token, "simple")
    outcome = {}

    def run():
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM range(0, 1000000000000)")
                outcome["result"] = cur.fetchall()
        except psycopg.Error as e:
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.0)
    m.revoke_token(name)
    t.join(timeout=60)
    check(not t.is_alive(), "the statement still runs a minute after its token was revoked")
    err = outcome.get("error")
    check(err is not None, f"the long statement finished: {outcome}")
    check(err.sqlstate == "28000", f"expected SQLSTATE 28000 (token revoked), got {err.sqlstate}: {err}")


def open_expiring_sessions(m):
    """Sessions logged in now with tokens that expire EXPIRY_S later; checked after the HTTP matrix."""
    sessions = {}
    for protocol in STATEMENTS:
        try:
            token = m.create_token("query", f"am-pg-expiring-{protocol}", ["--expires-in", f"{EXPIRY_S}s"])
            started = time.monotonic()
            sessions[protocol] = (open_session(m, token, protocol), started)
        except (Failed, psycopg.Error) as e:
            m.t.fail(f"pg session with an expiring token ({protocol})", f"could not log in before expiry: {e}")
    return sessions


def session_expired_case(m, conn, started, protocol):
    left = started + EXPIRY_S + 1.5 - time.monotonic()
    if left > 0:
        time.sleep(left)
    check_session_ended(conn, protocol, "expiry")


def pg_sessions(m, expiring):
    for protocol in STATEMENTS:
        m.t.case(f"pg session ends when its token is revoked ({protocol} protocol)", session_revoked_case, m, protocol)
    m.t.case("a running pg statement ends when its token is revoked", running_statement_revoked_case, m)
    if not m.expires_ok:
        m.t.fail("pg session ends when its token expires", "expires-in not implemented")
        return
    for protocol, (conn, started) in expiring.items():
        m.t.case(f"pg session ends when its token expires ({protocol} protocol)", session_expired_case, m, conn,
                 started, protocol)


# ---------------------------------------------------------------- limits and metrics

LIMIT = 5


def check_too_many(r):
    check(r.status == 429, f"expected 429: {r.short()}")
    check_error_body(r, "too_many_auth_failures")
    check("auth_failures_per_minute_max" in r.json()["error"]["message"], f"the message names no limit: {r.short()}")
    check((r.headers.get("retry-after") or "").isdigit(), f"no Retry-After: {r.headers}")


def check_pg_limited(login):
    check(login.outcome == "error" and login.sqlstate == "28000", f"expected SQLSTATE 28000, got {login}")
    check("auth_failures_per_minute_max" in login.message, f"the message names no limit: {login}")


def limit_http_cases(t, srv):
    bad = bearer(random_token())
    first = [request(srv.port, "GET", "/v1/log", bad).status for _ in range(LIMIT)]
    t.case(f"limit {LIMIT}: the first {LIMIT} failed HTTP attempts are 401", check, first == [401] * LIMIT,
           f"statuses {first}")
    t.case(f"limit {LIMIT}: the {LIMIT + 1}th failed HTTP attempt is 429", check_too_many,
           request(srv.port, "GET", "/v1/log", bad))
    t.case(f"limit {LIMIT}: a valid token from the blocked address is 429 too", check_too_many,
           request(srv.port, "GET", "/v1/log", bearer(srv.admin)))
    t.case(f"limit {LIMIT}: a PostgreSQL login from the HTTP-blocked address is refused", check_pg_limited,
           pg_login(srv.pg_port, "admin", srv.admin))


def limit_pg_cases(t, srv):
    bad = random_token()
    first = [pg_login(srv.pg_port, "query", bad) for _ in range(LIMIT)]
    t.case(f"limit {LIMIT}: the first {LIMIT} failed pg logins are 28P01", check,
           all(x.sqlstate == "28P01" for x in first), f"logins {[str(x) for x in first]}")
    t.case(f"limit {LIMIT}: the {LIMIT + 1}th failed pg login is refused by the limit", check_pg_limited,
           pg_login(srv.pg_port, "query", bad))
    t.case(f"limit {LIMIT}: a valid pg login from the blocked address is refused too", check_pg_limited,
           pg_login(srv.pg_port, "admin", srv.admin))
    t.case(f"limit {LIMIT}: HTTP from the pg-blocked address is 429", check_too_many,
           request(srv.port, "GET", "/v1/log", bearer(srv.admin)))


def metric(text, listener):
    found = re.search(r'^actlog_auth_failures_total\{listener="%s"\} (\d+)' % listener, text, re.M)
    return int(found.group(1)) if found else None


def metrics_case(m, listener, seen):
    r = request(m.s.port, "GET", "/metrics", bearer(m.tokens["auditor"]))
    check(r.status == 200, f"/metrics: {r.short()}")
    n = metric(r.text(), listener)
    check(n is not None, f'no actlog_auth_failures_total{{listener="{listener}"}} line')
    check(n >= seen > 0, f'actlog_auth_failures_total{{listener="{listener}"}} = {n}, but we saw {seen} failures')


# ---------------------------------------------------------------- secrets in the logs

def leaks(log, secret):
    """Where `secret`, or 16 characters of a random one, shows in `log`."""
    if secret in log:
        return "whole"
    body = secret[len("actlog_"):] if secret.startswith("actlog_") else secret
    if len(body) < 32:
        return None
    for i in range(min(len(body), 64) - 15):
        if body[i:i + 16] in log:
            return f"16 characters at offset {i}"
    return None


def log_case(m, srv):
    log = srv.log()
    found = [f"{label} ({where})" for label, s in m.secrets if (where := leaks(log, s))]
    check(not found, f"secrets in the {srv.name} server log: {found}")
    # Failed authentications are logged (without the credential, checked above).
    if srv.name == "main":
        check("authentication failed from 127.0.0.1" in log, "no failed HTTP authentication in the main server log")
        check("PostgreSQL login as" in log and "failed" in log, "no failed PostgreSQL login in the main server log")
    for label, s in m.secrets:
        if s.startswith("actlog_") and hashlib.sha256(s.encode()).hexdigest() in log:
            m.t.note(f"the SHA-256 of the {label} is in the {srv.name} server log (allowed: it is in the ledger)")


def request_id_case(m):
    """A client's x-request-id is replaced by the server's, and the log line
    of the failure carries the id the response gave."""
    theirs = "client-chosen-id-7f3a"
    r = m.call("GET", "/v1/log", auth=bearer("actlog_" + "x" * 43), headers={"x-request-id": theirs})
    check(r.status == 401, f"expected 401: {r.short()}")
    rid = r.headers.get("x-request-id", "")
    check(re.fullmatch(r"[0-9a-f]{8}-[0-9]+", rid), f"x-request-id {rid!r} is not the server's own form")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [ln for ln in m.s.log().splitlines() if f"id={rid} " in ln]
        if lines:
            break
        time.sleep(0.05)
    check(any("authentication failed from 127.0.0.1" in ln and "path=/v1/log" in ln for ln in lines),
          f"no log line with id={rid} names the failure: {lines}")
    check(theirs not in m.s.log(), "the client's own request id reached the log")


# ---------------------------------------------------------------- main

def start_servers(binary, work):
    main = Server(binary, work, "main", ["--auth-failures-per-minute-max", "100000"])
    limited = [Server(binary, work, f"limit-{x}", ["--auth-failures-per-minute-max", str(LIMIT)])
               for x in ("http", "pg")]
    for s in [main, *limited]:
        s.wait_serving()
    return main, limited


def check_serve_flag(binary):
    r = run(binary, ["serve", "--help"])
    check("--auth-failures-per-minute-max" in r.stdout, "`actlog serve --help` has no --auth-failures-per-minute-max")


def scenario(binary, work, t, servers):
    check_serve_flag(binary)
    main, limited = start_servers(binary, work)
    servers += [main, *limited]
    m = Matrix(binary, main, t)
    setup(m, work)
    for srv in limited:
        m.keep(f"{srv.name} admin token", srv.admin)
    expiring = setup_expiring(m)
    create_revoked(m)
    http_matrix(m)
    pg_matrix(m)
    pg_sessions(m, expiring)
    t.case("a 401's x-request-id is the server's own and names its log line", request_id_case, m)
    t.case('/metrics counts HTTP auth failures (listener="http")', metrics_case, m, "http", m.http_401)
    t.case('/metrics counts pg auth failures (listener="pg")', metrics_case, m, "pg", m.pg_failures)
    limit_http_cases(t, limited[0])
    limit_pg_cases(t, limited[1])
    return m


def stop_all(servers):
    for conn in PG_CONNS:
        try:
            conn.close()
        except Exception:
            pass
    for s in servers:
        s.stop()
    for s in servers:
        s.wait_stopped()


def main():
    binary = binary_path()
    t = Tally()
    if not os.access(binary, os.X_OK):
        print(f"auth_matrix: no actlog binary at {binary} (set ACTLOG_BIN or build first)")
        print("auth_matrix: 0 passed, 1 failed")
        return 1
    work = tempfile.mkdtemp(prefix="actlog-auth-matrix-")
    atexit.register(shutil.rmtree, work, True)
    atexit.register(kill_children)  # runs first: atexit is last-in, first-out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    started, servers, m = time.monotonic(), [], None
    try:
        m = scenario(binary, work, t, servers)
    except Failed as e:
        t.fail("setup", str(e))
    except Exception as e:  # a broken setup step: report it, still stop the servers and read their logs
        t.fail("setup", f"{type(e).__name__}: {e}")
    finally:
        stop_all(servers)
    if m is not None:
        for srv in servers:
            t.case(f"no secret in the {srv.name} server log", log_case, m, srv)
    for n in t.notes:
        print(f"note: {n}")
    print(f"auth_matrix: took {time.monotonic() - started:.1f} s")
    print(f"auth_matrix: {t.passed} passed, {len(t.failed)} failed", flush=True)
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
