#!/usr/bin/env bash
# HTTP ingest of two builds of actlog in one run, interleaved, for a
# before/after comparison on this noisy machine: each round serves a fresh
# data directory with binary A, then with binary B, and measures each with
# the same load generator (B's `actlog loadgen`):
#   throughput: batches of 256, 8 connections, 8 PDPs, pre-signed events;
#   latency: 5,000 events/s in batches of 10 over 16 connections.
#
#   bash tools/bench_ingest_ab.sh BIN_A BIN_B [SECONDS] [ROUNDS]   (20 s, 3 rounds)
#
# Prints one line per run and the median of each figure per binary.
set -euo pipefail
a=$1; b=$2; secs=${3:-20}; rounds=${4:-3}
work=$(mktemp -d)
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
run() {  # BIN TAG ROUND
  local bin=$1 tag=$2 r=$3 port=$((20000 + RANDOM % 20000)) d="$work/$2-$3"
  ACTLOG_DATA="$d" "$bin" serve --listen "127.0.0.1:$port" >"$d.token" 2>"$d.log" &
  srv=$!
  for _ in $(seq 300); do grep -q "serving" "$d.log" 2>/dev/null && break; sleep 0.1; done
  local admin url="http://127.0.0.1:$port"
  admin=$(cat "$d.token")
  local thr lat
  thr=$("$b" loadgen --url "$url" --admin-token "$admin" --batch 256 --concurrency 8 --pdps 8 \
        --duration "$secs" --events $((secs * 60000)) --json)
  lat=$("$b" loadgen --url "$url" --admin-token "$admin" --batch 10 --concurrency 16 --pdps 4 \
        --rate 5000 --duration "$secs" --json)
  kill "$srv"; wait "$srv" 2>/dev/null || true; srv=""
  python3 - "$tag" "$r" "$thr" "$lat" <<'PY'
import json, sys
tag, r, thr, lat = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(json.dumps({"bin": tag, "round": int(r), "events_per_s": thr["events_per_s"], "thr_errors": thr["errors"],
                  "p50_ms": lat["latency_ms"]["p50"], "p99_ms": lat["latency_ms"]["p99"], "lat_errors": lat["errors"]}))
PY
}
out="$work/results.jsonl"
for r in $(seq "$rounds"); do
  run "$a" A "$r" | tee -a "$out"
  run "$b" B "$r" | tee -a "$out"
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {t: {k: statistics.median(r[k] for r in rows if r["bin"] == t) for k in ("events_per_s", "p50_ms", "p99_ms")}
       for t in ("A", "B")}
for t in ("A", "B"):
    m = med[t]
    print(f"{t}: median {m['events_per_s']:.0f} events/s, p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms")
print(f"B/A: throughput {med['B']['events_per_s'] / med['A']['events_per_s']:.3f}, "
      f"p50 {med['B']['p50_ms'] / med['A']['p50_ms']:.3f}, p99 {med['B']['p99_ms'] / med['A']['p99_ms']:.3f}")
PY
