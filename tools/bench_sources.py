#!/usr/bin/env python3
"""Ingest throughput by source, side by side in one run (issue 17's target):
OPA decision-log chunks (`/v1/opa/logs`, the reference), Cerbos audit lines
(`/v1/cerbos/logs`), OTLP GenAI guardrail spans (`/v1/otlp/v1/traces`,
protobuf) and AuthZEN records (`/v1/authzen/decisions`).

    python3 tools/bench_sources.py --bin target/release/actlog [--batches 120] [--batch 256] [--threads 4]

Every source gets the same number of decisions in the same batch size, all
gzip, all new (no duplicates), sent by the same client threads; the bodies
are built before the clock starts. Prints one JSON line with events/s per
source and each one's ratio to OPA's.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import http.client
from urllib.parse import urlparse

from benchlib import served_url

TS = "2026-08-21T10:15:30.123456789Z"


def opa(i):
    return {"decision_id": f"d-{i}", "labels": {"id": "opa-bench", "version": "1.4.2"},
            "bundles": {"authz": {"revision": "rev-7"}}, "path": "mcp/authz/allow",
            "input": {"subject": {"type": "user", "id": "alice",
                                  "properties": {"act": {"sub": "agent-7", "sub_profile": "ai_agent"}}},
                      "action": {"name": "tools/call"}, "resource": {"type": "tool", "id": "book_flight"},
                      "context": {"session_id": "s1", "task_id": f"t{i // 8}"}},
            "result": i % 5 != 0, "timestamp": TS, "req_id": i}


def cerbos(i):
    return {"log.kind": "decision", "callId": f"01BENCH{i:019d}", "timestamp": TS,
            "checkResources": {
                "inputs": [{"requestId": f"r{i}", "resource": {"kind": "tool", "id": "book_flight"},
                            "principal": {"id": "alice", "roles": ["employee"]}, "actions": ["invoke"],
                            "auxData": {"jwt": {"sub": "alice", "act": {"sub": "agent-7", "sub_profile": "ai_agent"}}}}],
                "outputs": [{"resourceId": "book_flight",
                             "actions": {"invoke": {"effect": "EFFECT_ALLOW" if i % 5 else "EFFECT_DENY",
                                                    "policy": "resource.tool.vdefault"}}}]},
            "requestContext": {"annotations": {"session_id": "s1", "task_id": f"t{i // 8}"}}}


def authzen(i):
    return {"request": {"subject": {"type": "user", "id": "alice",
                                    "properties": {"act": {"sub": "agent-7", "sub_profile": "ai_agent"}}},
                        "action": {"name": "tools/call"}, "resource": {"type": "tool", "id": "book_flight"},
                        "context": {"session_id": "s1", "task_id": f"t{i // 8}"}},
            "response": {"decision": i % 5 != 0}, "pdp": "pdp-bench", "x_request_id": f"r-{i}", "time": TS}


def otlp_body(first, n):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="agent-svc")))
    ss = rs.scope_spans.add()
    for i in range(first, first + n):
        sp = ss.spans.add()
        sp.trace_id = i.to_bytes(16, "big")
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = "apply_guardrail tool-policy"
        sp.start_time_unix_nano = 1_787_307_330_000_000_000 + i
        for k, v in [("gen_ai.operation.name", "apply_guardrail"), ("gen_ai.agent.id", "agent-7"),
                     ("gen_ai.conversation.id", "s1"), ("gen_ai.security.target.type", "tool_call"),
                     ("gen_ai.security.target.id", "book_flight"), ("gen_ai.security.policy.id", "pol-7"),
                     ("gen_ai.security.decision.type", "allow" if i % 5 else "deny")]:
            sp.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
    return req.SerializeToString()


def bodies(source, batches, batch, base):
    out = []
    for b in range(batches):
        first = base + b * batch
        if source == "opa":
            raw = json.dumps([opa(i) for i in range(first, first + batch)]).encode()
            ct = "application/json"
        elif source == "cerbos":
            raw = "".join(json.dumps(cerbos(i)) + "\n" for i in range(first, first + batch)).encode()
            ct = "application/x-ndjson"
        elif source == "authzen":
            raw = "".join(json.dumps(authzen(i)) + "\n" for i in range(first, first + batch)).encode()
            ct = "application/x-ndjson"
        else:
            raw = otlp_body(first, batch)
            ct = "application/x-protobuf"
        out.append((ct, gzip.compress(raw, 1)))
    return out


PATHS = {"opa": "/v1/opa/logs", "cerbos": "/v1/cerbos/logs", "otlp": "/v1/otlp/v1/traces",
         "authzen": "/v1/authzen/decisions"}


def run(url, token, source, work, threads):
    u = urlparse(url)
    queue = list(work)
    lock = threading.Lock()
    errors = []

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        while True:
            with lock:
                if not queue:
                    return
                ct, body = queue.pop()
            conn.request("POST", PATHS[source], body=body, headers={
                "authorization": f"Bearer {token}", "content-type": ct, "content-encoding": "gzip"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                errors.append((r.status, data[:200]))
                return

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"{source}: {errors[0]}")
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--batches", type=int, default=120)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-sources-", dir="/var/tmp")
    try:
        env = dict(os.environ, ACTLOG_DATA=os.path.join(work, "data"))
        srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--batch-envelopes-max", "1024"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = served_url(srv)
            threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
            admin = srv.stdout.readline().strip()
            token = subprocess.run([args.bin, "tokens", "create", "--role", "ingest", "--url", url, "--token", admin],
                                   check=True, capture_output=True, text=True).stdout.strip()
            n = args.batches * args.batch
            result = {"events_per_source": n, "batch": args.batch, "threads": args.threads}
            for k, source in enumerate(["opa", "cerbos", "otlp", "authzen"]):
                work_items = bodies(source, args.batches, args.batch, base=k * 10_000_000)
                secs = run(url, token, source, work_items, args.threads)
                result[source] = round(n / secs)
            for source in ["cerbos", "otlp", "authzen"]:
                result[f"{source}_over_opa"] = round(result[source] / result["opa"], 2)
            print(json.dumps(result))
        finally:
            srv.terminate()
            srv.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
