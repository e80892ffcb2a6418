#!/usr/bin/env python3
"""Time from append to a witnessed checkpoint, under load (issue 13).

Starts two local C2SP witnesses (tests/tlog/witness.py, independent Python),
a ledger with `--witness-policy` requiring both (`group 2`), and
`actlog loadgen` at --rate events/s. Meanwhile probes append one signed
event at a time, alternating `?wait=witnessed` and `?wait=checkpoint`, and
time each request: the checkpoint probes are the floor (the ledger's own
signing interval) the witnessed ones are compared with, in the same run.

    python3 tools/bench_witness.py --bin target/release/actlog [--rate 5000] [--secs 30]

Prints one JSON line.
"""
import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_envelopes import PAYLOAD_TYPE, event, load_key, pae  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_witness(name, seed, log_vkey, state):
    p = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/tlog/witness.py"), "--listen", "127.0.0.1:0", "--name", name,
         "--seed-hex", seed, "--log", log_vkey, "--state", state],
        stdout=subprocess.PIPE, text=True)
    parts = p.stdout.readline().split()
    assert parts and parts[0] == "listening", parts
    return p, int(parts[1]), parts[2]


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--secs", type=int, default=30)
    ap.add_argument("--probes", type=int, default=4, help="concurrent probe clients")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="actlog-bench-witness.")
    data = os.path.join(work, "data")
    env = dict(os.environ, ACTLOG_DATA=data)
    admin = subprocess.run([args.bin, "init"], env=env, check=True, capture_output=True, text=True).stdout.strip()
    info = json.loads(subprocess.run([args.bin, "info", "--json"], env=env, check=True, capture_output=True,
                                     text=True).stdout)
    procs = []
    try:
        w1 = start_witness("w1.bench", "a1" * 32, info["verifier_key"], os.path.join(work, "w1.state"))
        w2 = start_witness("w2.bench", "b2" * 32, info["verifier_key"], os.path.join(work, "w2.state"))
        procs += [w1[0], w2[0]]
        policy = os.path.join(work, "policy")
        with open(policy, "w") as f:
            f.write(f"log {info['verifier_key']}\nwitness w1 {w1[2]} http://127.0.0.1:{w1[1]}\n"
                    f"witness w2 {w2[2]} http://127.0.0.1:{w2[1]}\ngroup both 2 w1 w2\nquorum both\n")
        srv = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--witness-policy", policy],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(srv)
        url = None
        for line in srv.stderr:
            if " on http://" in line:
                url = line.strip().split(" on ")[1]
                break
        threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
        host = urllib.parse.urlparse(url)
        keyfile = os.path.join(work, "probe.key")
        vk = subprocess.run([args.bin, "keygen", "--out", keyfile], env=env, check=True, capture_output=True,
                            text=True).stdout.strip()
        c = http.client.HTTPConnection(host.hostname, host.port)
        c.request("POST", "/v1/keys", json.dumps({"name": "probe", "public_key": vk, "pdp_id": "probe-pdp"}),
                  {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 201, r.read()
        r.read()
        name, key = load_key(keyfile)

        load = subprocess.Popen([args.bin, "loadgen", "--url", url, "--admin-token", admin, "--rate", str(args.rate),
                                 "--duration", str(args.secs), "--batch", "10", "--concurrency", "16", "--pdps", "4",
                                 "--json"], stdout=subprocess.PIPE, text=True)
        procs.append(load)
        time.sleep(3)  # let the load settle
        results = {"witnessed": [], "checkpoint": []}
        errors = []
        stop = time.time() + args.secs - 5
        lock = threading.Lock()

        def probe(k):
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
            i = k
            while time.time() < stop:
                wait = "witnessed" if (i // args.probes) % 2 == 0 else "checkpoint"
                body = json.dumps(event(1_000_000 + i, "probe-pdp"), separators=(",", ":")).encode()
                sig = key.sign(pae(PAYLOAD_TYPE, body))
                envl = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
                        "signatures": [{"keyid": name, "sig": base64.b64encode(sig).decode()}]}
                t = time.perf_counter()
                conn.request("POST", f"/v1/events?wait={wait}", json.dumps([envl]),
                             {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                dt = time.perf_counter() - t
                with lock:
                    if r.status == 200:
                        results[wait].append(dt * 1000)
                    else:
                        errors.append((r.status, text[:200]))
                i += args.probes
                time.sleep(0.05)

        threads = [threading.Thread(target=probe, args=(k,)) for k in range(args.probes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lg = json.loads(load.communicate()[0])
        out = {"rate_target": args.rate, "loadgen_events_per_s": round(lg["events_per_s"]),
               "loadgen_errors": lg["errors"], "probe_errors": len(errors)}
        for k, xs in results.items():
            out[k] = {"n": len(xs), "p50_ms": round(statistics.median(xs), 1) if xs else None,
                      "p99_ms": round(percentile(xs, 0.99), 1) if xs else None}
        if results["witnessed"] and results["checkpoint"]:
            out["witnessed_over_checkpoint_p50"] = round(out["witnessed"]["p50_ms"] / out["checkpoint"]["p50_ms"], 3)
        print(json.dumps(out))
        if errors:
            print(f"bench_witness: first errors: {errors[:3]}", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
