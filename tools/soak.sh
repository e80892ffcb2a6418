#!/usr/bin/env bash
# Memory under sustained load and under overload (release build):
#  1. SECONDS (default 600) of steady load at RATE events/s (default 2500),
#     the server's RSS sampled every 5 s and summarized per minute;
#  2. 60 s of overload: 128 connections sending batches of 256 as fast as
#     they can, so most are shed with 429; RSS sampled the same way.
# Extra `actlog serve` flags come from SOAK_SERVE_ARGS, e.g.
#   SOAK_SERVE_ARGS='--memtable-bytes-max 67108864 --block-cache-bytes-max 33554432'
#   bash tools/soak.sh [SECONDS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
rate=${2:-2500}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
cargo build --release --locked -p actlog-cli >&2
bin="$CARGO_TARGET_DIR/release/actlog"
work=$(mktemp -d)
trap 'kill $srv 2>/dev/null; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
# shellcheck disable=SC2086
ACTLOG_DATA="$work/data" "$bin" serve --listen "127.0.0.1:$port" ${SOAK_SERVE_ARGS:-} >"$work/admin.token" 2>"$work/serve.log" &
srv=$!
for _ in $(seq 100); do grep -q serving "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port"; admin=$(cat "$work/admin.token")
# RSS and its anonymous part (heap; the rest is mapped files), in KiB.
sample() {
  while kill -0 "$srv" 2>/dev/null; do
    echo "$(date +%s) $(awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} END {print r, a}' "/proc/$srv/status")"
    sleep 5
  done
}
sample > "$work/rss" &
sampler=$!
# RocksDB's own accounting once a minute, to tell its caches from the rest.
storage() {
  while kill -0 "$srv" 2>/dev/null; do
    sleep 60
    curl -s -H "Authorization: Bearer $admin" "$url/metrics" | awk -v t="$(date +%s)" \
      '/^actlog_storage_memory_bytes/ { split($1, k, "\""); v[k[2]] = $2 } END { printf "%d %.0f %.0f %.0f\n", t, v["memtables"]/1048576, v["table_readers"]/1048576, v["block_cache"]/1048576 }'
  done
}
storage > "$work/storage" &
storager=$!
start=$(date +%s)
steady=$("$bin" loadgen --url "$url" --admin-token "$admin" --rate "$rate" --duration "$secs" --batch 50 --concurrency 4 --json)
mid=$(date +%s)
# RocksDB's own accounting at the end of the steady phase.
curl -s -H "Authorization: Bearer $admin" "$url/metrics" | grep '^actlog_storage_memory_bytes' > "$work/mem" || true
over=$("$bin" loadgen --url "$url" --admin-token "$admin" --duration 60 --batch 256 --concurrency 128 --events 400000 --json)
end=$(date +%s)
kill "$sampler" "$storager" 2>/dev/null || true
echo "steady: $steady"
echo "overload: $over"
echo "storage memory at the end of the steady phase:"; sed 's/^/  /' "$work/mem"
awk -v s="$start" -v m="$mid" '{ t=$1-s; if ($1 < m) { min=int(t/60); if (!(min in lo) || $2<lo[min]) lo[min]=$2; if ($2>hi[min]) hi[min]=$2; if ($3>ah[min]) ah[min]=$3 } else { if (olo==""||$2<olo) olo=$2; if ($2>ohi) ohi=$2 } }
  END { printf "| minute | RSS min MiB | RSS max MiB | anonymous max MiB |\n| ---: | ---: | ---: | ---: |\n"; for (i=0;i in lo;i++) printf "| %d | %.0f | %.0f | %.0f |\n", i+1, lo[i]/1024, hi[i]/1024, ah[i]/1024;
        printf "\nOverload phase RSS: %.0f to %.0f MiB\n", olo/1024, ohi/1024 }' "$work/rss"
echo
echo "RocksDB memory once a minute (MiB): minute memtables table_readers block_cache"
awk -v s="$start" '{ printf "  %d %s %s %s\n", int(($1-s)/60), $2, $3, $4 }' "$work/storage"
