"""Test helpers: a real `actlog serve` on an ephemeral port, and a scripted
HTTP stub. Used by test_client.py and bench.py."""
import base64
import gzip
import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ACTLOG_BIN = os.environ.get("ACTLOG_BIN", "/var/tmp/actlog-target/debug/actlog")


def decision(event_id, pdp="pdp-a", **extra):
    """A minimal valid authz.decision event."""
    ev = {
        "spec_version": "1", "event_type": "authz.decision", "event_id": event_id,
        "event_time": "2026-08-21T10:15:30Z", "pdp": {"id": pdp},
        "delegation": {"principal": {"type": "user", "id": "alice"},
                       "actor": {"id": "agent-1", "sub_profile": "ai_agent"},
                       "chain": [{"depth": 1, "sub": "agent-1", "sub_profile": "ai_agent"}],
                       "verification": {"status": "verified"}},
        "correlation": {"session_id": "s1", "task_id": "t1"},
        "policy": {"version": "v1"},
        "request": {"subject": {"type": "agent", "id": "agent-1"}, "action": {"name": "tools/call"},
                    "resource": {"type": "tool", "id": "fs.read"}, "tool": {"name": "fs.read"}},
        "decision": {"effect": "allow"},
    }
    ev.update(extra)
    return ev


def free_port():
    """A port nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ActlogServer:
    """`actlog init` + `actlog serve --listen 127.0.0.1:0` in a temporary
    directory; stop() kills it and removes the directory."""

    def __init__(self, *serve_args):
        if not os.access(ACTLOG_BIN, os.X_OK):
            raise FileNotFoundError(f"no actlog binary at {ACTLOG_BIN} (set ACTLOG_BIN)")
        self.tmp = tempfile.mkdtemp(prefix="actlog-py-")
        self.data = os.path.join(self.tmp, "data")
        self.proc = None
        self.log = []
        try:
            self.admin = subprocess.run([ACTLOG_BIN, "--data", self.data, "init"], check=True,
                                        capture_output=True, text=True, timeout=60).stdout.strip()
            env = dict(os.environ, ACTLOG_DATA=self.data)
            self.proc = subprocess.Popen([ACTLOG_BIN, "serve", "--listen", "127.0.0.1:0", *serve_args], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
            bound = threading.Event()
            self.url = None

            def drain():
                for line in self.proc.stderr:  # keep reading so the pipe never fills
                    self.log.append(line)
                    if self.url is None and " on http://" in line:  # as tools/benchlib.py served_url
                        self.url = line.strip().split(" on ")[1]
                        bound.set()
                bound.set()

            threading.Thread(target=drain, daemon=True).start()
            if not bound.wait(60) or self.url is None:
                raise RuntimeError("actlog serve did not start:\n" + "".join(self.log))
        except BaseException:
            self.stop()
            raise

    def cli(self, *args):
        return subprocess.run([ACTLOG_BIN, *args, "--url", self.url, "--token", self.admin], check=True,
                              capture_output=True, text=True, timeout=60).stdout.strip()

    def add_key(self, name, public_key_b64, pdp):
        self.cli("keys", "add", name, "--public-key", public_key_b64, "--pdp", pdp)

    def ingest_token(self):
        return self.cli("tokens", "create", "--role", "ingest")

    def request(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {self.admin}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def metrics(self):
        req = urllib.request.Request(self.url + "/metrics", headers={"Authorization": f"Bearer {self.admin}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read().decode()

    def event(self, seq):
        return self.request("GET", f"/v1/events/{seq}")

    def sql(self, query):
        return self.request("POST", "/v1/sql", json.dumps({"sql": query}).encode())["rows"]

    def count(self, where="event_type NOT LIKE 'ledger.%'"):
        return self.sql(f"SELECT count(*) FROM events WHERE {where}")[0][0]

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


class Stub:
    """A tiny HTTP server for POST /v1/events that follows a script.

    Each request takes the next action from `script` (then `default`):
      ("status", code, headers, body)  answer that
      ("ok",)                          a made-up 200 with one receipt per envelope
      ("proxy",)                       forward to `upstream` and relay its answer
      ("proxy_drop",)                  forward to `upstream`, then close without answering
      ("drop",)                        close without answering
    `requests` records (monotonic time, headers, body) of every request.
    """

    def __init__(self, script=(), default=("ok",), upstream=None):
        self.script = list(script)
        self.default = default
        self.upstream = upstream
        self.requests = []
        self._seq = 1000
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stub._lock:
                    stub.requests.append((time.monotonic(), dict(self.headers), body))
                    action = stub.script.pop(0) if stub.script else stub.default
                kind = action[0]
                if kind in ("proxy", "proxy_drop"):
                    status, headers, out = stub._forward(self.path, dict(self.headers), body)
                    if kind == "proxy_drop":
                        self.close_connection = True
                        return
                    self._answer(status, headers, out)
                elif kind == "drop":
                    self.close_connection = True
                elif kind == "status":
                    self._answer(action[1], action[2], action[3])
                else:
                    self._answer(200, {}, stub._fake_receipts(body, self.headers.get("Content-Encoding")))

            def _answer(self, status, headers, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _fake_receipts(self, body, encoding):
        if encoding == "gzip":
            body = gzip.decompress(body)
        receipts = []
        for env in json.loads(body):
            ev = json.loads(base64.b64decode(env["payload"]))
            with self._lock:
                self._seq += 1
                seq = self._seq
            receipts.append({"event_id": ev["event_id"], "seq": seq, "leaf_hash": "AAAA", "duplicate": False})
        return json.dumps({"tree_size": self._seq + 1, "receipts": receipts}).encode()

    def _forward(self, path, headers, body):
        keep = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "content-encoding")}
        req = urllib.request.Request(self.upstream + path, data=body, method="POST", headers=keep)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k: v for k, v in e.headers.items() if k.lower() == "retry-after"}, e.read()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
