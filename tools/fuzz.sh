#!/usr/bin/env bash
# Coverage-guided fuzzing of the untrusted parsers (fuzz/), on the stable
# toolchain: libFuzzer from the libfuzzer-sys crate, with LLVM's
# sanitizer-coverage passes switched on by RUSTFLAGS (what cargo-fuzz does
# with --sanitizer none). Debug assertions and overflow checks are on.
#
#   bash tools/fuzz.sh [RUNS] [TARGET...]
#
# RUNS: inputs per target after the corpus (default 2000; CI uses this);
# use a large number, or -1 with FUZZ_SECONDS, for a real campaign.
# Each target first replays its whole corpus (fuzz/corpus/TARGET, which holds
# the seeds from tools/fuzz_seeds.py, inputs the fuzzer kept, and every
# crash turned into a regression input), so a fixed crash stays fixed.
# New inputs go to a scratch copy; with FUZZ_KEEP=1 the corpus is then
# minimized (libFuzzer's -merge=1: the fewest inputs with the same
# coverage) back into fuzz/corpus/TARGET, for committing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-2000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope event opa_chunk source_items gzip_body note tlog sql manifest)
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/actlog-fuzz-target}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros,
# which must not link the coverage runtime (cargo-fuzz does the same).
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --locked --manifest-path fuzz/Cargo.toml --bins --target "$host"
bin="$CARGO_TARGET_DIR/$host/debug"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  corpus="$scratch/$t"
  mkdir -p "$corpus" && cp -r "fuzz/corpus/$t/." "$corpus/"
  # libFuzzer counts the corpus replay in -runs; RUNS counts new inputs.
  total=$runs
  [ "$runs" -ge 0 ] && total=$(( runs + $(ls "$corpus" | wc -l) ))
  args=(-runs="$total" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$scratch/crash-$t-")
  [ -n "${FUZZ_SECONDS:-}" ] && args+=(-max_total_time="$FUZZ_SECONDS")
  echo "fuzz: $t (${runs} runs${FUZZ_SECONDS:+, at most $FUZZ_SECONDS s})" >&2
  if ! "$bin/$t" "${args[@]}" "$corpus" 2> "$scratch/$t.log"; then
    tail -40 "$scratch/$t.log" >&2
    ls "$scratch"/crash-"$t"-* 2>/dev/null | while read -r f; do
      echo "fuzz: $t crashed on $f (base64 follows; add it to fuzz/corpus/$t as a regression input)" >&2
      base64 -w0 "$f" >&2; echo >&2
    done
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|stat::new_units_added|cov:' "$scratch/$t.log" | tail -3 >&2
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    rm -rf "$scratch/min-$t" && mkdir "$scratch/min-$t"
    "$bin/$t" -merge=1 -max_len=65536 "$scratch/min-$t" "$corpus" 2> "$scratch/$t.merge.log"
    rm -rf "fuzz/corpus/$t" && cp -r "$scratch/min-$t" "fuzz/corpus/$t"
    echo "fuzz: $t corpus kept: $(ls "fuzz/corpus/$t" | wc -l) inputs" >&2
  fi
done
echo "fuzz: ${#targets[@]} targets passed"
