#!/usr/bin/env python3
"""Writes N signed DSSE envelopes (NDJSON) of realistic decision events.

An independent producer for benchmarks and demos: it reads an actlog signer
key (`actlog keygen`), builds events with delegation chains of depth 1 to 4,
about 8% denies and outcomes for most allows, and signs each with ed25519
over DSSE PAE.

    python3 tools/gen_envelopes.py --key pdp.key --pdp my-pdp --n 100000 > events.ndjson
"""
import argparse
import base64
import json
import sys

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
except ImportError:
    sys.exit("gen_envelopes: needs the `cryptography` package (python3 -m pip install cryptography)")

PAYLOAD_TYPE = "application/vnd.actlog.event.v1+json"


def load_key(path):
    text = open(path).read().strip()
    prefix = "PRIVATE+KEY+"
    if not text.startswith(prefix):
        sys.exit(f"gen_envelopes: {path} is not an actlog signer key")
    name, _key_id, blob = text[len(prefix):].split("+", 2)
    raw = base64.b64decode(blob)
    if len(raw) != 33 or raw[0] != 1:
        sys.exit(f"gen_envelopes: {path} is not an ed25519 signer key")
    return name, Ed25519PrivateKey.from_private_bytes(raw[1:])


def pae(payload_type, body):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def event(i, pdp):
    depth = 1 + i % 4
    agent = f"agent-{i % 97}"
    chain = [{"depth": 1, "sub": agent, "iss": "https://as.example", "sub_profile": "ai_agent"}]
    chain += [{"depth": d, "sub": f"orchestrator-{i % 13}-{d}", "iss": "https://as.example", "sub_profile": "ai_agent"}
              for d in range(2, depth + 1)]
    base = {
        "spec_version": "1",
        "event_id": f"gen-{pdp}-{i:010d}",
        "event_time": f"2026-08-{1 + (i // 86400) % 28:02d}T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "pdp": {"id": pdp},
        "delegation": {
            "principal": {"type": "user", "id": f"https://idp.example/users/u{i % 1000}", "iss": "https://idp.example"},
            "actor": {"id": agent, "iss": "https://as.example", "sub_profile": "ai_agent", "model": {"name": "model-x"}},
            "chain": chain,
            "verification": {"status": "verified" if i % 50 else "asserted"},
        },
        "correlation": {"session_id": f"sess-{i % 5000}", "task_id": f"task-{i // 3}"},
        "purpose": {"scope": "travel.book"},
        "trust": {"level": "T2", "risk_score": i % 100},
    }
    if i % 3 == 2:  # an outcome for the decision just before it
        base["event_type"] = "authz.outcome"
        base["outcome"] = {"decision_event_id": f"gen-{pdp}-{i - 1:010d}", "status": "executed"}
        return base
    base["event_type"] = "authz.decision"
    base["policy"] = {"bundles": {"authz": {"revision": f"rev-{i // 10000}"}}, "decision_path": "mcp/authz/allow"}
    base["request"] = {
        "subject": {"type": "user", "id": f"https://idp.example/users/u{i % 1000}"},
        "action": {"name": "tools/call"},
        "resource": {"type": "tool", "id": f"tool-{i % 31}"},
        "tool": {"protocol": "mcp", "server": "https://mcp.example", "name": f"tool-{i % 31}"},
    }
    base["decision"] = {"effect": "deny" if i % 12 == 0 else "allow"}
    return base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key", required=True)
    ap.add_argument("--pdp", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    name, key = load_key(args.key)
    out = sys.stdout
    for i in range(args.start, args.start + args.n):
        body = json.dumps(event(i, args.pdp), separators=(",", ":")).encode()
        sig = key.sign(pae(PAYLOAD_TYPE, body))
        env = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
               "signatures": [{"keyid": name, "sig": base64.b64encode(sig).decode()}]}
        out.write(json.dumps(env, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
