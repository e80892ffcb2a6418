#!/usr/bin/env bash
# The run command: installs build prerequisites when missing, builds actlog,
# and serves the ledger in ./actlog-data (created on first start, printing the
# ledger key and a bootstrap admin token once) on 127.0.0.1:7340.
# Extra arguments go to `actlog serve` (see `actlog serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/actlog-target}"
exec cargo run --locked -q -p actlog-cli -- serve "$@"
