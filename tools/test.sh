#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then
# runs every test (Rust, and the independent Python checks of the formats).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
python3 tests/schema_check.py
python3 tests/vectors_check.py
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line over every Rust test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "rust tests: %d passed, %d failed\n", p, f }' "$log"
