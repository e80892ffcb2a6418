#!/usr/bin/env python3
"""The investigator console (issue 16) end to end, in a real headless Chromium.

A generated ledger, witnessed by a witness written from the spec
(tests/tlog/witness.py) under a one-witness quorum, plus planted events: a principal with two executions
whose decision is not in the ledger, an agent whose id is markup, and an OPA
decision log. `actlog serve` runs on a loopback port, and the browser reaches
it through a small proxy in this file that can tamper with one inclusion
proof. Then, as an investigator:

- sign in with a query token;
- search each id kind (seq, event id, task, session, trace, principal,
  agent, tool, OPA decision id) and land on the right view;
- open a chain and see every hop's proof checked valid in the browser;
  tamper with one hop's proof in the proxy and see that hop, and only it,
  marked invalid; forge the checkpoint's signature, or the witness's
  cosignature, and see every hop fail;
- open the principal page and find exactly the planted executions without a
  decision;
- run a sample SQL query and download its CSV;
- make an evidence bundle: refused to a query token, downloaded by an
  auditor, and it verifies offline with `actlog verify --bundle`;
- on the Ledger view, check the consistency of two checkpoints in the
  browser, and see a tampered consistency proof caught;
- open the hostile agent's page: its id is shown as text, no script runs,
  and markup injected into the page cannot run an inline handler (CSP);
- no request leaves the origin (the browser's network log);
- axe-core finds no serious or critical accessibility violation.

Screenshots of each view go to $CONSOLE_SHOTS (default
$TMPDIR/actlog-console-shots). Timings are printed, never asserted.

Prints one line per check and "console_e2e: N passed, M failed".
"""
import base64
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python", "src"))
from actlog_client import Client, public_key_b64  # noqa: E402

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("console_e2e.py: the Python package 'selenium' is required (tools/setup.sh installs it)", file=sys.stderr)
    sys.exit(2)

BIN = os.environ.get("ACTLOG_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", "/var/tmp/actlog-target"), "debug", "actlog")
GEN = os.path.join(os.path.dirname(BIN), "actlog-gen")
AXE = os.environ.get("AXE_JS", "/var/tmp/actlog-npm/node_modules/axe-core/axe.min.js")
SHOTS = os.environ.get("CONSOLE_SHOTS", os.path.join(tempfile.gettempdir(), "actlog-console-shots"))
SEED = bytes(range(100, 132))
PDP = "console-pdp"
VICTIM = "https://idp.example/users/console-victim"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
SQL_ROWS_MAX = 5000  # above the ledger's 3,000-odd events, below a query that doubles them

passed = failed = 0


def check(ok, label, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print(f"{'PASS' if ok else 'FAIL'} {label}" + (f" -- {detail}" if detail and not ok else ""), flush=True)
    return ok


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=300, **kw).stdout.strip()


# ---------------------------------------------------------------- the ledger

def event(kind, event_id, actor, task, **extra):
    e = {
        "spec_version": "1", "event_type": kind, "event_id": event_id,
        "event_time": "2026-01-30T12:00:00Z", "pdp": {"id": PDP},
        "delegation": {"principal": {"type": "user", "id": VICTIM},
                       "actor": {"id": actor, "sub_profile": "ai_agent"},
                       "chain": [{"depth": 1, "sub": actor, "sub_profile": "ai_agent"}],
                       "verification": {"status": "verified"}},
        "correlation": {"session_id": "console-session", "task_id": task, "trace_id": "c0ffee" * 5 + "00"},
    }
    if kind == "authz.decision":
        e["policy"] = {"version": "console-policy-7"}
        e["request"] = {"subject": {"type": "agent", "id": actor}, "action": {"name": "tools/call"},
                        "resource": {"type": "tool", "id": "console.tool"}, "tool": {"name": "console.tool"}}
    e.update(extra)
    return e


def planted():
    agent = "https://agents.example/console-agent"
    return [
        event("authz.decision", "console-d1", agent, "console-task", decision={"effect": "allow"}),
        event("authz.outcome", "console-o1", agent, "console-task",
              outcome={"decision_event_id": "console-d1", "status": "executed"}),
        # Two executions whose decision was never recorded.
        event("authz.outcome", "console-orphan-1", agent, "console-task",
              outcome={"decision_event_id": "console-missing-1", "status": "executed"}),
        event("authz.outcome", "console-orphan-2", agent, "console-task",
              outcome={"decision_event_id": "console-missing-2", "status": "executed"}),
        event("authz.decision", "console-hostile", HOSTILE, "console-task-2", decision={"effect": "deny"}),
        # One id that is both a task and a session: search lists both.
        event("authz.decision", "console-twice-d", agent, "console-twice", decision={"effect": "allow"},
              correlation={"session_id": "console-twice", "task_id": "console-twice"}),
    ]


def opa_log():
    return [{
        "decision_id": "console-opa-decision-1", "labels": {"id": "console-opa", "version": "1.0.0"},
        "path": "agents/authz/allow", "timestamp": "2026-01-30T12:00:01Z", "revision": "rev-9",
        "input": {"subject": {"type": "agent", "id": "opa-agent"}, "action": {"name": "tools/call"},
                  "resource": {"type": "tool", "id": "fs.read"}},
        "result": {"allow": True},
    }]


class Server:
    def __init__(self, tmp):
        self.data = os.path.join(tmp, "data")
        run(GEN, "--data", self.data, "--events", "3000", "--seed", "5")
        env = dict(os.environ, ACTLOG_DATA=self.data)
        self.query = run(BIN, "tokens", "create", "--role", "query", env=env)
        self.ingest = run(BIN, "tokens", "create", "--role", "ingest", env=env)
        self.auditor = run(BIN, "tokens", "create", "--role", "auditor", env=env)
        run(BIN, "keys", "add", "console-key", "--public-key", public_key_b64(SEED), "--pdp", PDP, env=env)
        # A witness written from the spec (tests/tlog/witness.py), and a policy that needs it.
        vkey = json.loads(run(BIN, "info", "--json", env=env))["verifier_key"]
        self.witness = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "tlog", "witness.py"), "--listen", "127.0.0.1:0",
             "--name", "console-witness.example/w1", "--seed-hex", "77" * 32, "--log", vkey,
             "--state", os.path.join(tmp, "witness-state.json")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        _, port, witness_vkey = self.witness.stdout.readline().split()
        policy = os.path.join(tmp, "ledger.policy")
        with open(policy, "w") as f:
            f.write(f"log {vkey}\nwitness w1 {witness_vkey} http://127.0.0.1:{port}\nquorum w1\n")
        self.proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--witness-policy", policy,
                                      "--sql-rows-max", str(SQL_ROWS_MAX)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.url = None
        for line in self.proc.stderr:
            if " on http://" in line:
                self.url = line.strip().split(" on ")[1]
                break
        if not self.url:
            raise RuntimeError("actlog serve did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def call(self, path, body=None, token=None, content_type="application/json"):
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET",
                                     headers={"Authorization": f"Bearer {token or self.query}",
                                              "Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def sql(self, q):
        return self.call("/v1/sql", json.dumps({"sql": q}).encode())["rows"]

    def stop(self):
        for p in (self.proc, self.witness):
            p.kill()
            p.wait()


# ---------------------------------------------------------------- the proxy

class Proxy:
    """Forwards to the server; with `tamper_seq` set, flips a byte of the
    first hash of that seq's inclusion proof."""

    def __init__(self, upstream):
        self.upstream, self.tamper_seq, self.tamper_checkpoint, self.tamper_consistency = upstream, None, False, False
        self.tamper_signature_seq = None
        self.tamper_cosignature = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "content-type", "accept")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, rh, data = r.status, r.getheaders(), r.read()
                except urllib.error.HTTPError as e:
                    status, rh, data = e.code, e.headers.items(), e.read()
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                if u.path == "/v1/proofs/inclusion" and proxy.tamper_seq is not None \
                        and q.get("seq") == [str(proxy.tamper_seq)] and status == 200:
                    proof = json.loads(data)
                    h = bytearray(base64.b64decode(proof["hashes"][0]))
                    h[0] ^= 1
                    proof["hashes"][0] = base64.b64encode(bytes(h)).decode()
                    data = json.dumps(proof).encode()
                if proxy.tamper_signature_seq is not None and u.path == f"/v1/events/{proxy.tamper_signature_seq}" \
                        and status == 200:
                    ev = json.loads(data)
                    sig = bytearray(base64.b64decode(ev["envelope"]["signatures"][0]["sig"]))
                    sig[5] ^= 1
                    ev["envelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
                    data = json.dumps(ev).encode()
                if u.path == "/v1/log" and proxy.tamper_cosignature and status == 200:
                    log = json.loads(data)
                    lines = log["witnessed_checkpoint"].split("\n")
                    i = next(k for k, l in enumerate(lines) if l.startswith("\u2014 console-witness.example/w1 "))
                    name, blob = lines[i].rsplit(" ", 1)
                    raw = bytearray(base64.b64decode(blob))
                    raw[20] ^= 1  # a signature byte, after the key hash and the time
                    lines[i] = name + " " + base64.b64encode(bytes(raw)).decode()
                    log["witnessed_checkpoint"] = "\n".join(lines)
                    data = json.dumps(log).encode()
                if u.path == "/v1/proofs/consistency" and proxy.tamper_consistency and status == 200:
                    proof = json.loads(data)
                    h = bytearray(base64.b64decode(proof["hashes"][-1]))
                    h[0] ^= 1
                    proof["hashes"][-1] = base64.b64encode(bytes(h)).decode()
                    data = json.dumps(proof).encode()
                if u.path == "/v1/checkpoint" and proxy.tamper_checkpoint and status == 200:
                    lines = data.decode().split("\n")
                    name, sig = lines[4].rsplit(" ", 1)
                    raw = bytearray(base64.b64decode(sig))
                    raw[10] ^= 1  # a signature byte, after the 4-byte key id
                    lines[4] = name + " " + base64.b64encode(bytes(raw)).decode()
                    data = "\n".join(lines).encode()
                self.send_response(status)
                for k, v in rh:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = forward

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = S(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


# ---------------------------------------------------------------- the browser

def browser(downloads):
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
              "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return driver


def wait(driver, fn, timeout=30):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: fn(d))


def css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def shot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    driver.save_screenshot(os.path.join(SHOTS, name + ".png"))


def search(driver, text):
    driver.get(driver.base + "/ui/#/")
    box = wait(driver, lambda d: css(d, "#q") and css(d, "#q")[0])
    box.clear()
    box.send_keys(text + Keys.ENTER)  # the keyboard alone: the box has focus when the view opens


def landed(driver, prefix):
    try:
        wait(driver, lambda d: d.execute_script("return location.hash").startswith(prefix), 20)
        return True
    except Exception:
        return False


def chain_marks(driver):
    wait(driver, lambda d: css(d, "#chain-done"), 60)
    return [(n.get_attribute("data-kind"), int(n.get_attribute("data-seq")), "valid" in n.get_attribute("class").split())
            for n in css(driver, "#chain .node")]


def main():
    for tool in ("chromium", "chromedriver"):
        if not shutil.which(tool):
            print(f"console_e2e.py: {tool} is missing (tools/setup.sh installs chromium and chromium-driver)",
                  file=sys.stderr)
            return 2
    tmp = tempfile.mkdtemp(prefix="actlog-console-")
    server = proxy = driver = None
    try:
        server = Server(tmp)
        with Client(server.url, token=server.ingest, key=SEED, key_name="console-key") as c:
            receipts = c.send(planted())
        seq_of = {r.event_id: r.seq for r in receipts}
        server.call("/v1/opa/logs", json.dumps(opa_log()).encode(), token=server.ingest)
        # A witnessed checkpoint covers the planted events.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = server.call("/v1/log")
            if (log.get("witnessed_tree_size") or 0) >= log["tree_size"]:
                break
            time.sleep(0.2)
        check((log.get("witnessed_tree_size") or 0) >= log["tree_size"], "setup: the witness cosigned the ledger",
              json.dumps(log)[:300])
        proxy = Proxy(server.url)
        downloads = os.path.join(tmp, "downloads")
        os.makedirs(downloads)
        driver = browser(downloads)
        driver.base = proxy.url

        # Sign in.
        t0 = time.monotonic()
        driver.get(proxy.url + "/ui/")
        wait(driver, lambda d: css(d, "#token"))
        shot(driver, "01-sign-in")
        css(driver, "#token")[0].send_keys(server.query)
        css(driver, "#login")[0].click()
        wait(driver, lambda d: css(d, "#q"))
        check(driver.execute_script("return sessionStorage.getItem('actlog.token')") == server.query,
              "sign in: the token is kept in the tab's sessionStorage")
        check(not any(server.query in c["value"] for c in driver.get_cookies()), "sign in: no cookie holds the token")
        focus = driver.execute_script("return document.activeElement && document.activeElement.id")
        check(focus == "q", "keyboard: the search box has focus when the view opens (searches below press Enter)", focus)
        first_view = time.monotonic() - t0

        # Search each id kind.
        sample = server.sql("SELECT seq, event_id, task_id, session_id, trace_id, principal_id, actor_id, tool_name "
                            "FROM events WHERE event_type = 'authz.decision' AND task_id IS NOT NULL "
                            "AND trace_id IS NOT NULL AND tool_name IS NOT NULL ORDER BY seq LIMIT 1")[0]
        seq, eid, task, session, trace, principal, agent, tool = sample
        cases = [
            ("seq", str(seq), "#/chain/"), ("event_id", eid, "#/chain/"), ("task_id", task, "#/events?"),
            ("session_id", session, "#/events?"), ("trace_id", trace, "#/events?"),
            ("principal", principal, "#/principal/"), ("agent", agent, "#/agent/"), ("tool", tool, "#/events?"),
            ("OPA decision_id", "console-opa-decision-1", "#/chain/"),
        ]
        for kind, text, prefix in cases:
            search(driver, text)
            ok = landed(driver, prefix)
            if not ok and css(driver, "#results a.candidate"):
                # Ambiguous: the candidates list must offer this kind.
                kinds = [a.get_attribute("data-kind") for a in css(driver, "#results a.candidate")]
                want = {"OPA decision_id": "opa_decision_id", "principal": "principal", "agent": "agent",
                        "tool": "tool"}.get(kind, kind)
                ok = want in kinds
            check(ok, f"search {kind}: lands on {prefix}", driver.execute_script("return location.hash"))
        search(driver, "console-twice")
        try:
            wait(driver, lambda d: css(d, "#results a.candidate"), 20)
        except Exception:
            pass
        kinds = sorted(a.get_attribute("data-kind") for a in css(driver, "#results a.candidate"))
        check(kinds == ["session_id", "task_id"], "search: an ambiguous id lists its candidates", str(kinds))
        shot(driver, "02-search-candidates")
        search(driver, str(seq))
        landed(driver, "#/chain/")
        shot(driver, "02-search-to-chain")

        # A chain, proofs checked in the browser.
        driver.get(proxy.url + "/ui/#/chain/console-d1")
        marks = chain_marks(driver)
        kinds = [k for k, _, _ in marks]
        check(kinds[:1] == ["principal"] and "decision" in kinds and "outcome" in kinds and "policy" in kinds,
              "chain: principal, agent, tool, policy, decision and outcome nodes", str(kinds))
        check(marks and all(v for _, _, v in marks), "chain: every hop's proof is valid", str(marks))
        proofs = {p.text for p in css(driver, "#chain .proof")}
        check(all("cosigned by w1 (quorum w1 met)" in p for p in proofs),
              "chain: each hop is proven against the witnessed checkpoint, its cosignature checked", str(proofs))
        chain_ms = int(css(driver, "#chain-done")[0].get_attribute("data-ms"))
        sigs = {n.find_element(By.CSS_SELECTOR, ".sig").text for n in css(driver, "#chain .node")}
        check(sigs == {"signed by key console-key of PDP console-pdp (verified in the browser)"},
              "chain: each hop's producer signature is verified in the browser", str(sigs))
        shot(driver, "03-chain-valid")

        # A changed producer signature (the payload as it was): that hop fails.
        proxy.tamper_signature_seq = seq_of["console-d1"]
        driver.refresh()
        marks = chain_marks(driver)
        check(marks and all(not v for k, s, v in marks if s == seq_of["console-d1"])
              and all(v for k, s, v in marks if s != seq_of["console-d1"]),
              "chain: a changed producer signature fails its hops", str(marks))
        proxy.tamper_signature_seq = None
        driver.refresh()
        chain_marks(driver)

        # The OPA event has no producer signature, and says so.
        driver.get(proxy.url + "/ui/#/chain/" + urllib.parse.quote("opa:console-opa:console-opa-decision-1", safe=""))
        marks = chain_marks(driver)
        sigs = {n.find_element(By.CSS_SELECTOR, ".sig").text for n in css(driver, "#chain .node")}
        check(marks and all(v for _, _, v in marks) and all(x.startswith("token-authenticated") for x in sigs),
              "chain: an OPA hop is valid and token-authenticated", f"{marks} {sigs}")

        # Tamper with the outcome's proof: that hop, and only it, is invalid.
        proxy.tamper_seq = seq_of["console-o1"]
        driver.get(proxy.url + "/ui/#/events")
        driver.get(proxy.url + "/ui/#/chain/console-d1")
        marks = chain_marks(driver)
        bad = [(k, s) for k, s, v in marks if not v]
        check(bad == [("outcome", seq_of["console-o1"])], "chain: a tampered proof marks its hop invalid", str(marks))
        check("INVALID" in css(driver, "#chain .node.invalid .proof")[0].text, "chain: the invalid hop says why")
        shot(driver, "04-chain-tampered")
        proxy.tamper_seq = None

        # A cosignature that does not verify: the quorum fails, and every hop with it.
        proxy.tamper_cosignature = True
        driver.refresh()
        marks = chain_marks(driver)
        check(marks and not any(v for _, _, v in marks), "chain: a forged cosignature fails every hop", str(marks))
        check("do not meet the quorum w1" in css(driver, "#chain .node.invalid .proof")[0].text,
              "chain: the hop says the quorum is not met", css(driver, "#chain .node .proof")[0].text)
        proxy.tamper_cosignature = False

        # A checkpoint whose signature does not verify: every hop is invalid.
        proxy.tamper_checkpoint = True
        driver.refresh()  # a new page: no cached checkpoint
        marks = chain_marks(driver)
        check(marks and not any(v for _, _, v in marks), "chain: a forged checkpoint signature fails every hop",
              str(marks))
        check("signature invalid" in css(driver, "#chain-done")[0].text, "chain: the checkpoint signature is invalid")
        proxy.tamper_checkpoint = False
        driver.refresh()
        chain_marks(driver)

        # The principal page finds the planted executions without a decision.
        window = "from=2026-01-01T00%3A00%3A00Z&to=2026-03-01T00%3A00%3A00Z"
        driver.get(proxy.url + "/ui/#/principal/" + urllib.parse.quote(VICTIM, safe="") + "?" + window)
        wait(driver, lambda d: css(d, "#orphans"))
        rows = [r.text for r in css(driver, "#orphans tbody tr")]
        found = sorted(e for e in ("console-orphan-1", "console-orphan-2") if any(e in r for r in rows))
        check(len(rows) == 2 and found == ["console-orphan-1", "console-orphan-2"],
              "principal: exactly the two planted executions without a decision", str(rows))
        shot(driver, "05-principal")

        # Events over a window, with facets and CSV.
        t1 = time.monotonic()
        driver.get(proxy.url + "/ui/#/events?" + window)
        wait(driver, lambda d: css(d, "#events-csv") and css(d, "table tbody tr"))
        events_view = time.monotonic() - t1
        check(len(css(driver, ".facets .chip")) > 5, "events: facets are listed")
        shot(driver, "06-events")

        # SQL: a sample query, then its CSV.
        driver.get(proxy.url + "/ui/#/sql")
        samples = wait(driver, lambda d: css(d, "button.sample"))
        check(len(samples) >= 12, f"sql: {len(samples)} sample queries")
        [s for s in samples if s.text == "Decisions by effect and PDP"][0].click()
        wait(driver, lambda d: css(d, "#sql-result table tbody tr"))
        css(driver, "#csv")[0].click()
        path = os.path.join(downloads, "result.csv")
        try:
            wait(driver, lambda d: os.path.exists(path) and os.path.getsize(path) > 0, 20)
            head = open(path, encoding="utf-8").readline().strip()
        except Exception:
            head = ""
        check(head == "pdp_id,effect,n", "sql: the CSV downloads with its header", head)
        shot(driver, "07-sql")

        # The server's limits and errors are shown.
        def run_sql(text):
            area = css(driver, "#sql")[0]
            area.clear()
            area.send_keys(text)
            css(driver, "#run")[0].click()
            try:
                wait(driver, lambda d: css(d, "#sql-result table") or css(d, "#sql-result .error"), 60)
            except Exception:
                pass
            return css(driver, "#sql-result")[0].text

        out = run_sql("SELECT a.seq FROM events a CROSS JOIN (VALUES (1), (2)) v")
        check(f"{SQL_ROWS_MAX} rows" in out and "sql_rows_max" in out, "sql: a result cut at sql_rows_max says so", out[:200])
        out = run_sql("SELECT nope FROM events")
        check(out.startswith("sql_invalid:") and "nope" in out, "sql: a refused query shows the server's error", out[:200])

        # A hostile agent id is text, and the CSP stops inline handlers.
        driver.get(proxy.url + "/ui/#/agent/" + urllib.parse.quote(HOSTILE, safe="") + "?" + window)
        wait(driver, lambda d: css(d, "h2 code"))
        check(css(driver, "h2 code")[0].text == HOSTILE, "hostile id: shown as text")
        check(not css(driver, "main img"), "hostile id: no element made from it")
        driver.execute_script(
            "window.__violations = 0; document.addEventListener('securitypolicyviolation', () => window.__violations++);"
            "document.getElementById('main').insertAdjacentHTML('beforeend', arguments[0]);", HOSTILE)
        time.sleep(1)
        check(driver.execute_script("return window.__pwned") is None, "CSP: an injected inline handler does not run")
        check(driver.execute_script("return window.__violations") >= 1, "CSP: the browser reports the violation")
        shot(driver, "08-hostile-agent")

        # Ledger.
        driver.get(proxy.url + "/ui/#/ledger")
        wait(driver, lambda d: len(css(d, "table")) >= 3)
        text = driver.find_element(By.TAG_NAME, "main").text
        check("(signature valid)" in text, "ledger: the checkpoint signature is checked valid in the browser", text[:400])
        check("cosigned by w1 (quorum w1 met, checked in the browser)" in text,
              "ledger: the witnessed checkpoint's cosignature is checked in the browser", text[:600])
        sizes = [o.get_attribute("value") for o in css(driver, "#cons-old option")]
        check(len(sizes) >= 2, f"ledger: {len(sizes)} checkpoints listed")
        css(driver, "#cons-check")[0].click()
        wait(driver, lambda d: "consistency proof" in css(d, "#cons-result")[0].text)
        check(css(driver, "#cons-result")[0].text.startswith("✓ consistent"),
              "ledger: consistency between two checkpoints checked valid in the browser", css(driver, "#cons-result")[0].text)
        proxy.tamper_consistency = True
        css(driver, "#cons-check")[0].click()
        wait(driver, lambda d: "consistency proof" in css(d, "#cons-result")[0].text)
        check("consistency proof invalid" in css(driver, "#cons-result")[0].text,
              "ledger: a tampered consistency proof is caught", css(driver, "#cons-result")[0].text)
        proxy.tamper_consistency = False
        shot(driver, "09-ledger")

        # Evidence: a query token is refused; an auditor gets a bundle that verifies offline.
        driver.get(proxy.url + "/ui/#/evidence?" + window)
        wait(driver, lambda d: css(d, "#evidence-make"))[0].click()
        try:
            wait(driver, lambda d: css(d, "#evidence-result")[0].text.startswith(("forbidden", "Downloaded")), 60)
        except Exception:
            pass
        check(css(driver, "#evidence-result")[0].text.startswith("forbidden: this endpoint needs the auditor role"),
              "evidence: a query token is refused with the role it needs", css(driver, "#evidence-result")[0].text)
        css(driver, "#logout")[0].click()
        wait(driver, lambda d: css(d, "#token"))[0].send_keys(server.auditor)
        css(driver, "#login")[0].click()
        wait(driver, lambda d: css(d, "#q"))
        driver.get(proxy.url + "/ui/#/evidence?" + window)
        wait(driver, lambda d: css(d, "#evidence-make"))[0].click()
        try:
            wait(driver, lambda d: "Downloaded" in css(d, "#evidence-result")[0].text
                 or css(d, "#evidence-result")[0].get_attribute("class") == "error", 300)
        except Exception:
            pass
        shot(driver, "10-evidence")
        bundles = [f for f in os.listdir(downloads) if f.startswith("evidence-") and f.endswith(".tar.gz")]
        ok = check(len(bundles) == 1, "evidence: an auditor downloads the bundle",
                   css(driver, "#evidence-result")[0].text)
        if ok:
            with tarfile.open(os.path.join(downloads, bundles[0])) as t:
                names = t.getnames()
                check(all(n == "evidence" or n.startswith("evidence/") for n in names) and "evidence/findings.json" in names
                      and "evidence/report.html" in names, "evidence: the archive holds the bundle directory", str(names))
                t.extractall(os.path.join(tmp, "unpacked"), filter="data")
            vkey = server.call("/v1/log")["verifier_key"]
            v = subprocess.run([BIN, "verify", "--bundle", os.path.join(tmp, "unpacked", "evidence"), "--key", vkey],
                               capture_output=True, text=True, timeout=300)
            check(v.returncode == 0, "evidence: the downloaded bundle verifies offline", v.stdout + v.stderr)

        # Accessibility: axe-core on the main views.
        if os.path.exists(AXE):
            axe = open(AXE, encoding="utf-8").read()
            serious = []
            for view in ("#/", "#/events?" + window, "#/chain/console-d1", "#/sql", "#/ledger", "#/evidence"):
                driver.get(proxy.url + "/ui/" + view)
                time.sleep(1.5)
                driver.execute_script(axe)
                r = driver.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map("
                    "v => [v.id, v.impact, v.nodes.length])));")
                serious += [(view, *v) for v in r if v[1] in ("serious", "critical")]
            check(not serious, "accessibility: axe-core finds no serious or critical violation", str(serious))
        else:
            check(False, f"accessibility: axe-core is missing at {AXE} (tools/setup.sh installs it)")

        # No request left the origin.
        urls = []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                urls.append(msg["params"]["request"]["url"])
        foreign = [u for u in urls if not (u.startswith(proxy.url + "/") or u.startswith(("blob:", "data:")))]
        check(urls and not foreign, f"network: all {len(urls)} requests stay on the origin", str(foreign[:5]))

        print(f"console_e2e: timings: sign-in to search {first_view * 1000:.0f} ms, events view "
              f"{events_view * 1000:.0f} ms, chain with proofs checked {chain_ms} ms")
    finally:
        if driver is not None:
            driver.quit()
        if proxy is not None:
            proxy.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"console_e2e: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
