#!/usr/bin/env bash
# Times `actlog import` of N signed events and `actlog verify` (with and
# without signatures) on a release build. Prints a Markdown table row.
#   bash tools/bench_import.sh [N]        (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
cargo build --release -p actlog-cli --locked >&2
bin="$CARGO_TARGET_DIR/release/actlog"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ACTLOG_DATA="$work/data"
"$bin" init >/dev/null 2>&1
vk=$("$bin" keygen --out "$work/pdp.key" 2>/dev/null)
"$bin" keys add pdp --public-key "$vk" --pdp bench-pdp 2>/dev/null
python3 tools/gen_envelopes.py --key "$work/pdp.key" --pdp bench-pdp --n "$n" > "$work/events.ndjson"
bytes=$(stat -c %s "$work/events.ndjson")
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
imp=$(t "$bin" import "$work/events.ndjson")
ver=$(t "$bin" verify)
ver_ns=$(t "$bin" verify --no-signatures)
disk=$(du -sb "$ACTLOG_DATA/db" | cut -f1)
printf '| %d | %.2f s (%.0f/s) | %.2f s (%.0f/s) | %.2f s (%.0f/s) | %.0f B/event (NDJSON %.0f B/event) |\n' \
  "$n" "$imp" "$(echo "$n / $imp" | bc -l)" "$ver" "$(echo "$n / $ver" | bc -l)" \
  "$ver_ns" "$(echo "$n / $ver_ns" | bc -l)" "$(echo "$disk / $n" | bc -l)" "$(echo "$bytes / $n" | bc -l)"
