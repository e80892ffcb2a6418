#!/usr/bin/env bash
# Installs the build and test prerequisites when missing (idempotent).
# - libclang-dev: RocksDB's bindgen needs libclang.
# - postgresql-client: the tests run the real psql against `--pg-listen`.
# - openssl, curl: the TLS test makes its own certificates and calls HTTPS.
# - golang-go, golang-golang-x-mod-dev: Go's sumdb/tlog and note packages
#   read the ledger's tiles in the transparency tests (built offline).
# - jsonschema, blake3, cryptography (PyPI): the independent format checks in tests/.
# - psycopg (PyPI): an extended-protocol PostgreSQL client for the --pg-listen test.
# - duckdb (PyPI): reads bundle Parquet files in tests/bundle_check.py and the archive's hive tables.
# - moto[server] (PyPI): a real S3-compatible server for the archive tests (boto3 comes with it).
# - chromium, chromium-driver (Debian), selenium (PyPI), axe-core (npm, into
#   $ACTLOG_NPM_DIR, outside the clone): the console's browser test.
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (rustup) first" >&2
  exit 2
fi
need_apt=()
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v psql >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/psql ] || need_apt+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
dpkg -s golang-golang-x-mod-dev >/dev/null 2>&1 || need_apt+=(golang-golang-x-mod-dev)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
need_pip=()
python3 -c 'import jsonschema' 2>/dev/null || need_pip+=(jsonschema)
python3 -c 'import blake3' 2>/dev/null || need_pip+=(blake3)
python3 -c 'import cryptography' 2>/dev/null || need_pip+=(cryptography)
python3 -c 'import psycopg' 2>/dev/null || need_pip+=('psycopg[binary]')
python3 -c 'import duckdb' 2>/dev/null || need_pip+=(duckdb)
# The OpenTelemetry Python SDK and its OTLP/HTTP exporter: a real client of /v1/otlp.
python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' 2>/dev/null \
  || need_pip+=(opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)
{ python3 -c 'import moto.server, boto3, flask' 2>/dev/null && command -v moto_server >/dev/null; } || need_pip+=('moto[server]')
python3 -c 'import selenium' 2>/dev/null || need_pip+=(selenium)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "setup: pip installing ${need_pip[*]}" >&2
  python3 -m pip install -q "${need_pip[@]}"
fi
# axe-core for the console's accessibility check, pinned.
npm_dir="${ACTLOG_NPM_DIR:-/var/tmp/actlog-npm}"
if [ ! -f "$npm_dir/node_modules/axe-core/axe.min.js" ]; then
  echo "setup: npm installing axe-core into $npm_dir" >&2
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm install --silent --no-audit --no-fund axe-core@4.10.2 >/dev/null)
fi
