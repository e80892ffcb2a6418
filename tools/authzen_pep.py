#!/usr/bin/env python3
"""A reference AuthZEN gateway (PEP side) that records every evaluation in actlog.

It stands between an application and an AuthZEN 1.0 PDP:

    app --POST /access/v1/evaluation(s)--> this gateway --same--> PDP
                                              |
                                              +--> actlog POST /v1/authzen/decisions

It forwards each evaluation request unchanged, returns the PDP's answer
unchanged (with the X-Request-ID it echoed), and sends actlog one record
{request, response, pdp, policy_version, x_request_id, time} per call. A
record that actlog refuses or cannot take is kept in a spool file and sent
again before the next one, so a gateway restart loses nothing it answered.

Only the Python standard library is used. Run it as:

    python3 tools/authzen_pep.py --listen 127.0.0.1:8181 --pdp http://127.0.0.1:8080 \
        --actlog http://127.0.0.1:7340 --token "$INGEST" [--pdp-id ID] [--policy-version V] \
        [--spool FILE]

It prints "listening on HOST:PORT" once it is ready.
"""

import argparse
import datetime
import http.server
import json
import os
import sys
import threading
import urllib.error
import urllib.request
import uuid

EVALUATION_PATHS = ("/access/v1/evaluation", "/access/v1/evaluations")


class Recorder:
    """Sends records to actlog; what cannot be sent waits in the spool file."""

    def __init__(self, actlog, token, spool):
        self.url = actlog.rstrip("/") + "/v1/authzen/decisions"
        self.token = token
        self.spool = spool
        self.lock = threading.Lock()

    def _post(self, lines):
        body = "".join(line + "\n" for line in lines).encode()
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"content-type": "application/x-ndjson", "authorization": "Bearer " + self.token},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status == 200

    def record(self, record):
        line = json.dumps(record, separators=(",", ":"), sort_keys=True)
        with self.lock:
            pending = []
            if os.path.exists(self.spool):
                with open(self.spool) as f:
                    pending = [x for x in f.read().splitlines() if x]
            pending.append(line)
            try:
                sent = self._post(pending)
            except (urllib.error.URLError, OSError) as e:
                print(f"authzen_pep: actlog did not take {len(pending)} records ({e}); spooled", file=sys.stderr)
                sent = False
            if sent:
                if os.path.exists(self.spool):
                    os.remove(self.spool)
            else:
                tmp = self.spool + ".tmp"
                with open(tmp, "w") as f:
                    f.write("".join(x + "\n" for x in pending))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.spool)


def make_handler(args, recorder):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            if self.path not in EVALUATION_PATHS:
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                request = json.loads(body)
            except ValueError:
                self.send_error(400, "not JSON")
                return
            request_id = self.headers.get("x-request-id") or str(uuid.uuid4())
            forward = urllib.request.Request(
                args.pdp.rstrip("/") + self.path,
                data=body,
                method="POST",
                headers={"content-type": "application/json", "x-request-id": request_id},
            )
            try:
                with urllib.request.urlopen(forward, timeout=10) as r:
                    answer, status = r.read(), r.status
                    echoed = r.headers.get("x-request-id") or request_id
            except urllib.error.HTTPError as e:
                self.send_error(e.code, "the PDP refused the request")
                return
            except (urllib.error.URLError, OSError):
                self.send_error(502, "the PDP did not answer")
                return
            response = json.loads(answer)
            record = {
                "request": request,
                "response": response,
                "pdp": args.pdp_id or args.pdp,
                "x_request_id": echoed,
                "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            if args.policy_version:
                record["policy_version"] = args.policy_version
            # Recorded before the application sees the answer: an answer
            # the ledger may not hold is never given.
            recorder.record(record)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("x-request-id", echoed)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:8181")
    p.add_argument("--pdp", required=True, help="the AuthZEN PDP's base URL")
    p.add_argument("--pdp-id", help="the PDP id recorded (default: its URL)")
    p.add_argument("--policy-version", help="the policy version the PDP runs, if known")
    p.add_argument("--actlog", required=True, help="actlog's base URL")
    p.add_argument("--token", required=True, help="an actlog ingest token")
    p.add_argument("--spool", default="authzen_pep.spool", help="records actlog has not taken yet")
    args = p.parse_args()
    host, port = args.listen.rsplit(":", 1)
    recorder = Recorder(args.actlog, args.token, args.spool)
    server = http.server.ThreadingHTTPServer((host, int(port)), make_handler(args, recorder))
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
