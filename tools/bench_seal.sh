#!/usr/bin/env bash
# Server CPU per ingested event, two builds side by side in one run: each
# `actlog serve` takes N events from the same `actlog loadgen` (AFTER's,
# batches of 256), seals them into segments, and is stopped; its CPU time (user + sys,
# from /proc) is divided by N. The builds differ only in how the tail and
# the segments get their rows, so the difference is that cost per event.
#   bash tools/bench_seal.sh BEFORE_BIN AFTER_BIN [EVENTS] [ROUNDS]
# SERVE_ENV="VAR=value ..." sets the servers' environment (allocator options).
# QUERIES=1 also runs `SELECT count(*) FROM events` every 0.2 s during the
# load, as a console would: each query decodes the new tail.
set -euo pipefail
before=$1; after=$2; n=${3:-262144}; rounds=${4:-2}
work=$(mktemp -d)
trap 'kill $srv 2>/dev/null; rm -rf "$work"' EXIT
srv=""
tick=$(getconf CLK_TCK)
run() {
  local bin=$1 label=$2
  rm -rf "$work/data"
  local port=$((20000 + RANDOM % 20000))
  env ${SERVE_ENV:-} ACTLOG_DATA="$work/data" "$bin" serve --listen "127.0.0.1:$port" >"$work/admin.token" 2>"$work/serve.log" &
  srv=$!
  for _ in $(seq 100); do grep -q "serving" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
  local admin; admin=$(cat "$work/admin.token")
  local q=""
  if [ "${QUERIES:-0}" = 1 ]; then
    local qt; qt=$("$bin" tokens create --role query --url "http://127.0.0.1:$port" --token "$admin")
    ( while true; do
        curl -s -o /dev/null -H "authorization: Bearer $qt" -H 'content-type: application/json' \
          -d '{"sql":"SELECT count(*) FROM events"}' "http://127.0.0.1:$port/v1/sql"
        sleep 0.2
      done ) &
    q=$!
  fi
  "$after" loadgen --url "http://127.0.0.1:$port" --admin-token "$admin" --batch 256 --concurrency 8 --pdps 8 \
    --events "$n" --duration 600 --json > "$work/load.json"
  [ -n "$q" ] && kill "$q"
  # Wait until every full segment is sealed (the seal loop runs every second).
  local want=$(( n / 65536 ))
  for _ in $(seq 300); do
    [ "$(ls "$work/data/segments" 2>/dev/null | grep -c '^events-')" -ge "$want" ] && break
    sleep 0.2
  done
  sleep 1.5
  local cpu; cpu=$(awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$srv/stat")
  kill "$srv"; wait "$srv" 2>/dev/null || true; srv=""
  python3 -c "
import json
l = json.load(open('$work/load.json'))
print('| $label | %d | %.0f | %.2f | %.1f |' % ($n, l.get('events_per_s', 0), $cpu, $cpu * 1e6 / $n))"
}
echo "| build | events | ingest events/s | server CPU s | server CPU µs/event |"
echo "|---|---|---|---|---|"
for _ in $(seq "$rounds"); do
  run "$before" before
  run "$after" after
done
