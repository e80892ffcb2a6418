#!/usr/bin/env bash
# HTTP ingest benchmark, side by side with its peer, in one run:
#  1. actlog serve (release) on loopback, loaded by `actlog loadgen`:
#     throughput with batches of 256, and latency at 5,000 events/s in batches of 10;
#     the server's RSS is sampled throughout.
#  2. The PostgreSQL "audit table" peer (tools/pg_peer.py) doing the same job:
#     client-side ed25519 checks, a pgcrypto hash-chain trigger,
#     synchronous_commit=on, the same batches and concurrency.
#  3. The machine's batched ed25519 verify rate on both cores (criterion), the physical limit.
#   bash tools/bench_ingest.sh [SECONDS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
cargo build --release --locked -p actlog-cli >&2
bin="$CARGO_TARGET_DIR/release/actlog"
work=$(mktemp -d)
pgbin=/usr/lib/postgresql/15/bin
cleanup() {
  [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  [ -d "$work/pg" ] && su postgres -c "$pgbin/pg_ctl -D $work/pg -m fast stop" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))

# 1. actlog
ACTLOG_DATA="$work/data" "$bin" serve --listen "127.0.0.1:$port" >"$work/admin.token" 2>"$work/serve.log" &
srv=$!
for _ in $(seq 100); do grep -q "serving" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
admin=$(cat "$work/admin.token")
url="http://127.0.0.1:$port"
( while kill -0 "$srv" 2>/dev/null; do ps -o rss= -p "$srv" >> "$work/rss"; sleep 1; done ) &
sampler=$!
thr=$("$bin" loadgen --url "$url" --admin-token "$admin" --batch 256 --concurrency 8 --pdps 8 \
      --duration "$secs" --events $((secs * 60000)) --json)
lat=$("$bin" loadgen --url "$url" --admin-token "$admin" --batch 10 --concurrency 16 --pdps 4 \
      --rate 5000 --duration "$secs" --json)
kill "$sampler" 2>/dev/null || true
rss_min=$(sort -n "$work/rss" | head -1); rss_max=$(sort -n "$work/rss" | tail -1)
kill "$srv"; wait "$srv" 2>/dev/null || true; srv=""

# 2. PostgreSQL peer
mkdir -p "$work/pg" "$work/pgsock"; chown -R postgres "$work"
su postgres -c "$pgbin/initdb -D $work/pg -A trust" >/dev/null
su postgres -c "$pgbin/pg_ctl -D $work/pg -o '-k $work/pgsock -p 54329 -c listen_addresses=' -l $work/pg.log start" >/dev/null
"$bin" keygen --out "$work/pdp.key" >/dev/null 2>&1
pub=$(python3 -c "
import base64,sys
t=open('$work/pdp.key').read().strip().split('+',4)[4]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization as s
k=Ed25519PrivateKey.from_private_bytes(base64.b64decode(t)[1:])
print(k.public_key().public_bytes(s.Encoding.Raw,s.PublicFormat.Raw).hex())")
python3 tools/gen_envelopes.py --key "$work/pdp.key" --pdp pg-peer --n 100000 > "$work/pg.ndjson"
pg=$(python3 tools/pg_peer.py --dsn "host=$work/pgsock port=54329 dbname=postgres user=postgres" \
     --envelopes "$work/pg.ndjson" --public-key-hex "$pub" --batch 256 --concurrency 8)

# 3. The limit
cargo bench --locked -p actlog-benches --bench ledger -- --warm-up-time 1 --measurement-time 4 \
  'limit/dalek_verify_batch_1024_2cores' >/dev/null 2>&1
limit=$(python3 - <<PY
import json
b="$CARGO_TARGET_DIR/criterion/limit/dalek_verify_batch_1024_2cores/new/estimates.json"
print(1024/(json.load(open(b))["mean"]["point_estimate"]/1e9))
PY
)
python3 - "$thr" "$lat" "$pg" "$limit" "$rss_min" "$rss_max" <<'PY'
import json, sys
thr, lat, pg = (json.loads(x) for x in sys.argv[1:4])
limit, rmin, rmax = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
print("| run | events/s | ratio to limit | p50 ms | p99 ms | max ms | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, r in [("actlog, batch 256, 8 connections", thr), ("actlog, 5,000/s target, batch 10", lat), ("PostgreSQL audit table, batch 256, 8 clients", pg)]:
    l = r["latency_ms"]
    print(f"| {name} | {r['events_per_s']:,.0f} | {r['events_per_s']/limit:.2f} | {l['p50']:.1f} | {l['p99']:.1f} | {l['max']:.1f} | {r['errors']} |")
print(f"\nLimit (ed25519-dalek batch verify, 2 cores): {limit:,.0f}/s. actlog / PostgreSQL: {thr['events_per_s']/pg['events_per_s']:.1f}x. Server RSS during the run: {rmin/1024:.0f} to {rmax/1024:.0f} MiB.")
PY
