#!/usr/bin/env python3
"""SIGKILL crash campaign under HTTP load: no acknowledged event may be lost.

Each cycle loads `actlog serve` with concurrent batches of pre-signed DSSE
envelopes, SIGKILLs it mid-load, restarts it on the same data directory and
re-reads by seq every event acknowledged since the last restart and a random
sample of older ones; after the last restart it re-reads every acknowledged
event. At the end
`actlog verify` checks the whole ledger while no server runs.

    python3 tools/kill_campaign.py --cycles 50 [--bin PATH] [--clients 4] [--batch 64]

Prints one JSON line on stdout; exits 1 on any loss, mismatch or failed verify.
"""
import argparse, atexit, base64, ctypes, http.client, json, os, random
import shutil, signal, socket, subprocess, sys, tempfile, threading, time, uuid
from collections import deque
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "schema/examples/valid/01-authz-decision-agent-tool-allow.json")
CHILDREN = []  # every server we started; killed on exit


def log(msg):
    print(f"kill_campaign: {msg}", file=sys.stderr, flush=True)


def kill_children():
    for p in CHILDREN:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def die_with_parent():
    # Linux: the server gets SIGKILL if this script dies first (PR_SET_PDEATHSIG).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(args, what, stdin=None, stdout=subprocess.PIPE, timeout=120):
    """Runs one actlog command; returns its stdout (stripped) or exits."""
    r = subprocess.run(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, text=True)
    if r.returncode != 0:
        sys.exit(f"kill_campaign: {what} failed (exit {r.returncode}): {r.stderr.strip()}")
    return (r.stdout or "").strip()


def slurp(path):
    with open(path) as f:
        return f.read()


class Server:
    """One `actlog serve` process on a fresh free port, logs in the work dir."""

    def __init__(self, binary, data, work, n):
        for attempt in range(5):  # a new port when another process took ours
            self.port = free_port()
            out, err = (os.path.join(work, f"serve-{n}.{attempt}.{x}") for x in ("out", "err"))
            with open(out, "w") as o, open(err, "w") as e:
                self.proc = subprocess.Popen([binary, "serve", "--data", data, "--listen", f"127.0.0.1:{self.port}"],
                                             stdin=subprocess.DEVNULL, stdout=o, stderr=e, preexec_fn=die_with_parent)
            CHILDREN.append(self.proc)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None and "serving" not in slurp(err):
                time.sleep(0.05)
            text = slurp(err)
            if "serving" in text:
                self.stdout, self.url = slurp(out), f"http://127.0.0.1:{self.port}"
                return
            if self.proc.poll() is None:
                self.kill()
                sys.exit(f"kill_campaign: server not serving after 60 s:\n{text}")
            if "address already in use" not in text.lower():
                sys.exit(f"kill_campaign: server exited {self.proc.returncode}:\n{text}")
            log(f"port {self.port} was taken, retrying: {text.strip()[-200:]}")
        sys.exit("kill_campaign: no free port after 5 attempts")

    def kill(self):
        if self.proc.poll() is not None:
            sys.exit(f"kill_campaign: the server died on its own (exit {self.proc.returncode}) before SIGKILL")
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def make_events(n, pdp_id):
    """n events from the example decision, each with a unique id and time."""
    base = json.load(open(EXAMPLE))
    assert base["event_type"] == "authz.decision"
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    for i in range(n):
        ev = base  # mutated and dumped at once, so one dict serves every event
        ev["event_id"] = str(uuid.uuid4())
        ev["event_time"] = (t0 + timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ev["pdp"]["id"] = pdp_id
        ev["correlation"]["request_id"] = str(uuid.uuid4())
        yield json.dumps(ev, separators=(",", ":"))


class Ledger:
    """What the server acknowledged, and what we found wrong."""

    def __init__(self):
        self.lock = threading.RLock()
        self.acked = {}  # event_id -> (seq, leaf_hash bytes, envelope line)
        self.by_seq = {}  # seq -> event_id
        self.lost, self.mismatched, self.evidence = set(), set(), []
        self.statuses = {}  # non-200 answers and errors seen by the clients
        self.done = []  # fully acknowledged batches, replayed once the pool is empty

    def bad(self, kind, eid, msg):
        with self.lock:  # reentrant: record() calls this with the lock held
            (self.lost if kind == "lost" else self.mismatched).add(eid)
            if len(self.evidence) < 20:
                self.evidence.append(f"{kind}: {eid}: {msg}")

    def record(self, batch, answer):
        receipts = answer.get("receipts", [])
        with self.lock:
            if len(receipts) != len(batch):
                self.bad("mismatch", "batch", f"{len(receipts)} receipts for {len(batch)} envelopes")
                return
            for (eid, line), r in zip(batch, receipts):
                seq, lh = r["seq"], base64.b64decode(r["leaf_hash"])
                if r["event_id"] != eid:
                    self.bad("mismatch", eid, f"receipt names {r['event_id']}")
                elif eid in self.acked and (self.acked[eid][:2] != (seq, lh) or r["duplicate"] is not True):
                    self.bad("mismatch", eid, f"acked again at seq {seq} ({r['duplicate']=}), first at {self.acked[eid][0]}")
                elif self.by_seq.get(seq, eid) != eid:
                    self.bad("mismatch", eid, f"seq {seq} already acked for {self.by_seq[seq]}")
                else:
                    self.acked[eid], self.by_seq[seq] = (seq, lh, line), eid
            self.done.append(batch)

    def count(self, key):
        with self.lock:
            self.statuses[key] = self.statuses.get(key, 0) + 1


def client(port, token, pool, ledger, stop, deadline):
    """Posts batches from the shared pool until stopped; unacknowledged ones go back."""
    headers = {"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {token}"}
    conn = None
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            batch = pool.popleft()
        except IndexError:  # all sent: replay acknowledged batches, which must come back as duplicates
            with ledger.lock:
                batch = random.choice(ledger.done) if ledger.done else None
            if batch is None:
                return
            ledger.count("replayed batches")
        body = ("\n".join(line for _, line in batch) + "\n").encode()
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            conn.request("POST", "/v1/events", body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            pool.appendleft(batch)  # not acknowledged: retry later
            ledger.count(type(e).__name__)
            conn = conn.close() if conn else None
            time.sleep(0.02)
            continue
        if resp.status == 200:
            try:
                ledger.record(batch, json.loads(data))
            except (ValueError, KeyError, TypeError) as e:
                ledger.bad("mismatch", "batch", f"unreadable 200 answer ({e}): {data[:200]!r}")
        else:
            pool.appendleft(batch)
            ledger.count(f"HTTP {resp.status}")
            time.sleep(0.1)
    if conn:
        conn.close()


def get_json(conn_box, port, path, token):
    """GET with up to 5 tries on connection errors or 5xx; returns (status, json)."""
    for attempt in range(5):
        try:
            conn_box[0] = conn_box[0] or http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            conn_box[0].request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn_box[0].getresponse()
            data = resp.read()
            if resp.status < 500:
                return resp.status, json.loads(data)
        except (OSError, http.client.HTTPException, ValueError):
            conn_box[0] = conn_box[0].close() if conn_box[0] else None
        time.sleep(0.2 * (attempt + 1))
    return None, None


def check_all(server, token, ledger, threads, seconds_max=1800, pick=None):
    """Re-reads acknowledged events by seq and compares them with what we sent:
    every one, or those `pick(all items)` returns."""
    with ledger.lock:
        items = sorted(ledger.acked.items(), key=lambda kv: kv[1][0])
    if pick is not None:
        items = sorted(pick(items), key=lambda kv: kv[1][0])
    errors, port, deadline = [], server.port, time.monotonic() + seconds_max

    def worker(part):
        box = [None]
        for eid, (seq, lh, line) in part:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                errors.append(f"check stopped at seq {seq}: server exited or {seconds_max} s passed")
                break
            status, ev = get_json(box, port, f"/v1/events/{seq}", token)
            if status == 404:
                ledger.bad("lost", eid, f"seq {seq}: {ev}")
            elif status != 200:
                errors.append(f"seq {seq}: status {status} {ev}")
            else:
                env = ev.get("envelope")
                env = json.loads(env) if isinstance(env, str) else env
                if ev.get("event_id") != eid:
                    ledger.bad("mismatch", eid, f"seq {seq} holds {ev.get('event_id')}")
                elif env != json.loads(line):
                    ledger.bad("mismatch", eid, f"seq {seq}: stored envelope differs")
                elif base64.b64decode(ev.get("leaf_hash", "")) != lh:
                    ledger.bad("mismatch", eid, f"seq {seq}: leaf_hash differs")
        if box[0]:
            box[0].close()

    ts = [threading.Thread(target=worker, args=(items[i::threads],), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=seconds_max + 60)
    status, ready = get_json([None], port, "/readyz", token)
    top = items[-1][1][0] if items else -1
    if ready is None or ready.get("tree_size", -1) <= top:
        errors.append(f"/readyz {status} {ready}: tree_size does not cover acknowledged seq {top}")
    return len(items), errors


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/actlog-target")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(target, "debug/actlog"))
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64, help="envelopes per POST")
    ap.add_argument("--batches", type=int, default=20, help="pre-signed batches per client per cycle")
    ap.add_argument("--check-threads", type=int, default=4)
    ap.add_argument("--sample", type=int, default=2000,
                    help="after each restart, re-read every event acknowledged since the last one and this many "
                         "older ones at random; after the last restart, every event")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"kill_campaign: no actlog binary at {a.bin}")

    work = tempfile.mkdtemp(prefix="actlog-kill-")
    data, keys = os.path.join(work, "data"), os.path.join(work, "keys")
    os.mkdir(keys)
    atexit.register(lambda: None if a.keep else shutil.rmtree(work, ignore_errors=True))
    atexit.register(kill_children)  # runs first: atexit is last-in, first-out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    log(f"seed {seed}, work dir {work}")

    # Pre-sign every envelope before the campaign clock starts.
    pdp_id = f"kc-pdp-{uuid.uuid4().hex[:8]}"
    pub = cli([a.bin, "keygen", "--out", os.path.join(keys, "pdp.key")], "keygen")
    total = a.cycles * a.clients * a.batches * a.batch
    ev_path, env_path = os.path.join(work, "events.ndjson"), os.path.join(work, "envelopes.ndjson")
    with open(ev_path, "w") as f:
        f.writelines(line + "\n" for line in make_events(total, pdp_id))
    t = time.monotonic()
    with open(ev_path) as fin, open(env_path, "w") as fout:
        cli([a.bin, "sign", "--key", os.path.join(keys, "pdp.key")], "sign", stdin=fin, stdout=fout, timeout=3600)
    lines, ids = slurp(env_path).splitlines(), [json.loads(l)["event_id"] for l in open(ev_path)]
    if len(lines) != total:
        sys.exit(f"kill_campaign: sign wrote {len(lines)} envelopes for {total} events")
    log(f"signed {total} envelopes in {time.monotonic() - t:.1f} s")
    pairs = list(zip(ids, lines))  # (event_id, envelope line), in batches of --batch
    pool = deque(pairs[i:i + a.batch] for i in range(0, total, a.batch))

    start = time.monotonic()
    ledger = Ledger()
    server = Server(a.bin, data, work, 0)
    admin = server.stdout.strip()
    if not admin or "\n" in admin:
        sys.exit(f"kill_campaign: expected one bootstrap token line on stdout, got {server.stdout!r}")
    remote = ["--url", server.url, "--token", admin]
    cli([a.bin, "keys", "add", "pdp-kc", "--public-key", pub, "--pdp", pdp_id, *remote], "keys add")
    ingest = cli([a.bin, "tokens", "create", "--role", "ingest", "--name", "kc-ingest", "--pdp", pdp_id, *remote],
                 "tokens create ingest")
    auditor = cli([a.bin, "tokens", "create", "--role", "auditor", "--name", "kc-auditor", *remote],
                  "tokens create auditor")

    checked, check_errors, seen = 0, [], set()
    for cycle in range(1, a.cycles + 1):
        # Load, then SIGKILL mid-load.
        stop, load = threading.Event(), rng.uniform(0.2, 1.5)
        before = len(ledger.acked)
        ts = [threading.Thread(target=client, args=(server.port, ingest, pool, ledger, stop, time.monotonic() + 30),
                               daemon=True) for _ in range(a.clients)]
        for t in ts:
            t.start()
        time.sleep(load)
        server.kill()
        stop.set()
        for t in ts:
            t.join(timeout=30)
        if any(t.is_alive() for t in ts):
            sys.exit("kill_campaign: a client thread did not stop within 30 s")
        # Restart on the same data, then re-read everything acknowledged so far.
        server = Server(a.bin, data, work, cycle)
        if server.stdout.strip():
            log(f"odd: restart {cycle} printed on stdout: {server.stdout.strip()[:80]}")
        t = time.monotonic()

        def pick(items, seen=seen):
            fresh = [kv for kv in items if kv[0] not in seen]
            older = [kv for kv in items if kv[0] in seen]
            return fresh + rng.sample(older, min(a.sample, len(older)))

        checked, errs = check_all(server, auditor, ledger, a.check_threads, pick=None if cycle == a.cycles else pick)
        with ledger.lock:
            seen.update(ledger.acked)
        check_errors += [f"cycle {cycle}: {e}" for e in errs]
        log(f"cycle {cycle}/{a.cycles}: load {load:.2f} s, +{len(ledger.acked) - before} acked, "
            f"{checked} checked in {time.monotonic() - t:.1f} s, lost {len(ledger.lost)}, mismatched {len(ledger.mismatched)}, "
            f"{len(errs)} check errors, {len(pool)} batches queued")

    # Stop the last server gracefully, then verify the whole ledger offline.
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log("odd: server did not stop within 60 s of SIGTERM; killing it")
        server.kill()
    v = subprocess.run([a.bin, "verify", "--data", data], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=1800)
    verify_ok = v.returncode == 0
    seconds = round(time.monotonic() - start, 1)

    for line in ledger.evidence + check_errors[:20]:
        log(line)
    log(f"client errors, non-200 answers and replays: {ledger.statuses}")
    log(f"verify (exit {v.returncode}): {v.stdout.strip()[-300:]}")
    ok = verify_ok and not ledger.lost and not ledger.mismatched and not check_errors
    log(f"{'PASS' if ok else 'FAIL'}: {a.cycles} SIGKILL cycles, {len(ledger.acked)} acknowledged events, "
        f"{len(ledger.lost)} lost, {len(ledger.mismatched)} mismatched, {len(check_errors)} check errors, "
        f"verify {'ok' if verify_ok else 'FAILED'}, {seconds} s")
    print(json.dumps({"cycles": a.cycles, "acknowledged": len(ledger.acked), "lost": len(ledger.lost),
                      "mismatched": len(ledger.mismatched), "verify_ok": verify_ok, "seconds": seconds,
                      "check_errors": len(check_errors), "seed": seed}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
