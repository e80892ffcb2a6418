#!/usr/bin/env bash
# Issue 4's query benchmarks on a release build, at N generated events
# (default 10,000,000): build the ledger with actlog-gen (the real append
# path), seal segments, serve it, then time chain reconstruction, a one-day
# window and a full-scan aggregate over HTTP, and the same aggregate in
# DuckDB over the very same Parquet files. Prints Markdown for
# docs/benchmarks.md.
#   bash tools/bench_sql.sh [N] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}
work=${2:-$(mktemp -d /var/tmp/actlog-bench-sql.XXXX)}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
cargo build --release -p actlog-cli -p actlog-gen --locked >&2
python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install -q duckdb >&2
bin="$CARGO_TARGET_DIR/release"
data="$work/data"
if [ ! -d "$data/db" ]; then
  mkdir -p "$work"
  "$bin/actlog" --data "$data" init --origin bench.actlog.test >"$work/admin.token" 2>/dev/null
  s=$(date +%s.%N)
  "$bin/actlog-gen" --data "$data" --events "$n" --seed 1 --pdps 16 --days 30 >"$work/gen.json"
  e=$(date +%s.%N)
  echo "generate: $(echo "$e - $s" | bc) s; $(cat "$work/gen.json")" >&2
  s=$(date +%s.%N)
  # A writable `actlog sql` seals every full segment first.
  "$bin/actlog" --data "$data" sql 'SELECT 1' --format csv >/dev/null
  e=$(date +%s.%N)
  echo "seal: $(echo "$e - $s" | bc) s" >&2
  echo "$(echo "$e - $s" | bc)" >"$work/seal.seconds"
fi
python3 tools/bench_sql.py --bin "$bin/actlog" --data "$data" --admin-token "$(cat "$work/admin.token")" \
  --gen "$work/gen.json" --seal-seconds "$(cat "$work/seal.seconds")"
