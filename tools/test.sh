#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then
# runs every test (Rust, the independent Python checks of the formats, the
# auth matrix against a real server, a short SIGKILL campaign, and a short
# run of every fuzz target over its corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
python3 tests/schema_check.py
python3 tests/vectors_check.py
python3 tests/doc_paths_check.py
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The binary the Rust tests ran, for the checks that drive it from outside.
export ACTLOG_BIN="$CARGO_TARGET_DIR/debug/actlog"
python3 tests/auth_matrix.py 2>&1 | tee -a "$log"
# The Python producer SDK's own tests, against a real server.
python3 -m unittest discover -s clients/python/tests 2>&1 | tee -a "$log"
# The investigator console in a real headless Chromium.
AXE_JS="${ACTLOG_NPM_DIR:-/var/tmp/actlog-npm}/node_modules/axe-core/axe.min.js" \
  python3 tests/console_e2e.py 2>&1 | tee -a "$log"
# Three SIGKILLs under HTTP load (the 50-cycle run is in docs/benchmarks.md).
python3 tools/kill_campaign.py --cycles 3 --batches 5 --bin "$ACTLOG_BIN" | tee -a "$log"
# Every fuzz target over its committed corpus, then 2,000 new inputs each.
bash tools/fuzz.sh 2000 2>&1 | tee -a "$log"
python3 - "$log" <<'PY'
import json, re, sys
passed = failed = 0
ran = None  # the last unittest "Ran N tests" line, until its verdict
for line in open(sys.argv[1], errors="replace"):
    if m := re.match(r"Ran (\d+) tests? in", line):
        ran = int(m[1])
        continue
    if ran is not None and (m := re.match(r"(OK|FAILED)\b(.*)", line.strip())):
        bad = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", m[2]))
        passed, failed, ran = passed + ran - bad, failed + bad, None
        continue
    if m := re.match(r"test result: \w+\. (\d+) passed; (\d+) failed", line):
        passed, failed = passed + int(m[1]), failed + int(m[2])
    elif m := re.match(r"auth_matrix: (\d+) passed, (\d+) failed", line):
        passed, failed = passed + int(m[1]), failed + int(m[2])
    elif m := re.match(r"console_e2e: (\d+) passed, (\d+) failed", line):
        passed, failed = passed + int(m[1]), failed + int(m[2])
    elif m := re.match(r"fuzz: (\d+) targets passed", line):
        passed += int(m[1])
    elif line.startswith("{") and '"cycles"' in line:
        k = json.loads(line)
        ok = k["lost"] == 0 and k["mismatched"] == 0 and k["verify_ok"]
        passed, failed = passed + ok, failed + (not ok)
print(f"tests: {passed} passed, {failed} failed")
PY
