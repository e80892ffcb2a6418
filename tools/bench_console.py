#!/usr/bin/env python3
"""Times the investigator console on a large ledger, in headless Chromium.

    python3 tools/bench_console.py --bin $CARGO_TARGET_DIR/release/actlog --data DIR/data [--rounds 5]

Serves DIR/data (making a query token in it, which adds one ledger record),
signs in, and times, each round in a fresh page:
- first view: the Events view of the latest day, until its table is drawn;
- search: a task id typed in the search box, until the Events view of it;
- chain: a decision with an outcome, until every hop's proof is checked in
  the browser (the page's own measure, from the chain's answer to the last
  proof checked), and the whole view from navigation.
Prints medians as JSON. Nothing is asserted: docs/benchmarks.md records them.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import console_e2e as e2e  # noqa: E402


def serve(binary, data):
    token = subprocess.run([binary, "--data", data, "tokens", "create", "--role", "query"], check=True,
                           capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([binary, "--data", data, "serve", "--listen", "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if " on http://" in line:
            url = line.strip().split(" on ")[1]
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, url, token
    raise RuntimeError("serve did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    proc, url, token = serve(a.bin, a.data)
    tmp = tempfile.mkdtemp()
    driver = e2e.browser(tmp)
    try:
        import urllib.request

        def sql(q):
            req = urllib.request.Request(url + "/v1/sql", data=json.dumps({"sql": q}).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                return json.loads(r.read())["rows"]

        size = sql("SELECT count(*) FROM events")[0][0]
        last = sql("SELECT max(event_time) FROM events WHERE seq >= (SELECT max(seq) FROM events) - 1000")[0][0]
        day_end = last[:10] + "T23:59:59Z"
        day_start = last[:10] + "T00:00:00Z"
        # A decision with an outcome, and its task, from the last day.
        eid, task = sql("SELECT d.event_id, d.task_id FROM events o JOIN events d ON d.event_id = o.decision_event_id "
                        "WHERE o.event_type = 'authz.outcome' AND o.seq >= (SELECT max(seq) FROM events) - 20000 "
                        "AND d.task_id IS NOT NULL LIMIT 1")[0]
        driver.get(url + "/ui/")
        driver.execute_script("sessionStorage.setItem('actlog.token', arguments[0])", token)
        first, search, chain_page, chain_proofs = [], [], [], []
        for _ in range(a.rounds):
            driver.get("about:blank")
            t = time.monotonic()
            driver.get(f"{url}/ui/#/events?from={day_start}&to={day_end}")
            e2e.wait(driver, lambda d: e2e.css(d, "#events-csv") and e2e.css(d, "table tbody tr"), 600)
            first.append(time.monotonic() - t)

            driver.get(url + "/ui/#/")
            box = e2e.wait(driver, lambda d: e2e.css(d, "#q") and e2e.css(d, "#q")[0])
            box.send_keys(task)
            t = time.monotonic()
            e2e.css(driver, "form[role=search] button")[0].click()
            e2e.wait(driver, lambda d: d.execute_script("return location.hash").startswith("#/events?")
                     and e2e.css(d, "#events-csv"), 600)
            search.append(time.monotonic() - t)

            driver.get("about:blank")
            t = time.monotonic()
            driver.get(f"{url}/ui/#/chain/{eid}")
            e2e.wait(driver, lambda d: e2e.css(d, "#chain-done"), 600)
            chain_page.append(time.monotonic() - t)
            chain_proofs.append(int(e2e.css(driver, "#chain-done")[0].get_attribute("data-ms")) / 1000)
            marks = [n.get_attribute("class") for n in e2e.css(driver, "#chain .node")]
            assert all("valid" in m.split() for m in marks), marks
        ms = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
        print(json.dumps({"events": size, "rounds": a.rounds, "first_view_ms": ms(first), "search_task_ms": ms(search),
                          "chain_view_ms": ms(chain_page), "chain_proofs_checked_ms": ms(chain_proofs)}))
    finally:
        driver.quit()
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
