#!/usr/bin/env bash
# Cold CI before and after a change, one after the other in one run, each
# in a fresh clone with its own empty target directories (docs/benchmarks.md,
# "CI time, cold"). Nothing else should build meanwhile (about 80 minutes on
# two cores).
#   bash tools/ci_cold_pair.sh BEFORE_REV AFTER_REV [REPO]
set -u
before=${1:?before revision}; after=${2:?after revision}; repo=${3:-$(cd "$(dirname "$0")/.." && pwd)}
out=/var/tmp/ci-cold-pair.result
for pair in "before:$before" "after:$after"; do
  name=${pair%%:*}; rev=${pair#*:}
  clone=/var/tmp/cold-$name
  rm -rf "$clone" "$clone-target" "$clone-fuzz"
  git clone -q "$repo" "$clone" && git -C "$clone" checkout -q "$rev"
  s=$(date +%s)
  (cd "$clone" && CARGO_TARGET_DIR="$clone-target" FUZZ_TARGET_DIR="$clone-fuzz" bash .ci/run) > "$clone.log" 2>&1
  rc=$?
  echo "$name $rev rc=$rc secs=$(( $(date +%s) - s )) $(grep 'ci: lint done' "$clone.log")" | tee -a "$out"
  du -sh "$clone-target" "$clone-fuzz" | tee -a "$out"
  rm -rf "$clone" "$clone-target" "$clone-fuzz"
done
