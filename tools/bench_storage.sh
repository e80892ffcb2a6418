#!/usr/bin/env bash
# Storage per event of two builds (issue 13: Merkle nodes vs tiles): each
# imports the same N signed events (tools/gen_envelopes.py) into a fresh
# data directory; then RocksDB's bytes on disk after close, per event, and,
# for a build with `info --storage`, the keys and bytes of each column family.
#   bash tools/bench_storage.sh BIN_BEFORE BIN_AFTER [N]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1; b=$2; n=${3:-100000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$b" keygen --out "$work/pdp.key" >"$work/pdp.vk" 2>/dev/null
python3 tools/gen_envelopes.py --key "$work/pdp.key" --pdp bench-pdp --n "$n" >"$work/events.ndjson"
for tag in before after; do
  bin=$a; [ "$tag" = after ] && bin=$b
  export ACTLOG_DATA="$work/$tag"
  "$bin" init >/dev/null 2>&1
  "$bin" keys add pdp --public-key "$(cat "$work/pdp.vk")" --pdp bench-pdp 2>/dev/null
  s=$(date +%s.%N)
  "$bin" import "$work/events.ndjson" >/dev/null 2>&1
  e=$(date +%s.%N)
  disk=$(du -sb "$ACTLOG_DATA/db" | cut -f1)
  printf '%s: %d events imported in %.2f s; RocksDB %.0f B/event on disk\n' "$tag" "$n" "$(echo "$e - $s" | bc)" \
    "$(echo "$disk / $n" | bc -l)"
  if "$bin" info --json --storage >"$work/$tag.json" 2>/dev/null; then
    python3 - "$work/$tag.json" "$n" <<'PY'
import json, sys
v, n = json.load(open(sys.argv[1])), int(sys.argv[2])
st = v["storage"]
keys = sum(c["keys"] for c in st.values())
print(f"  keys stored per event: {keys / n:.3f}; " + ", ".join(
    f"{cf} {c['keys'] / n:.3f} keys {c['bytes'] / n:.0f} B" for cf, c in st.items()))
PY
  fi
done
