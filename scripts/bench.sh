#!/usr/bin/env bash
# `make bench`: the table of README.md's "Performance", from one command.
# Builds the worker in release mode, installs DuckDB (the local job's peer)
# into a bench-only venv outside the clone, and runs `taxistream-worker
# bench` against the real services.
#
#   BENCH_ROWS      rows of the synthetic month (5000000)
#   BENCH_DATA_DIR  where the month is kept between runs (bench-data)
#   BENCH_REPEATS   runs of each local process, median reported (3)
#   CASSANDRA_CONTACT_POINTS, CASSANDRA_LOCAL_DATACENTER
#                   a Cassandra for the sink figure and the end-to-end
#                   latency; without it the sink is not measured and the
#                   latency is to the aggregates topic
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

rows="${BENCH_ROWS:-5000000}"
data_dir="${BENCH_DATA_DIR:-bench-data}"
repeats="${BENCH_REPEATS:-3}"
duckdb_version=2.0.0
bench_venv="$TAXISTREAM_HOME/bench-venv"

log() { printf '==> bench: %s\n' "$*" >&2; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# GNU time reports each process's peak RSS.
if [ ! -x /usr/bin/time ]; then
  log "apt: installing time"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq time
fi
if ! "$bench_venv/bin/python" -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$duckdb_version')" 2>/dev/null; then
  log "DuckDB $duckdb_version (PyPI) into $bench_venv"
  python3 -m venv "$bench_venv"
  "$bench_venv/bin/pip" install -q "duckdb==$duckdb_version"
fi

# Services this script starts are stopped again; ones already running (a
# developer's session, another job) are left alone.
started_services=""
if bash scripts/services.sh status | grep -q "stopped"; then started_services=1; fi
cleanup() {
  if [ -n "$started_services" ]; then bash scripts/services.sh down; fi
}
trap cleanup EXIT
eval "$(bash scripts/services.sh up)"

cargo build --release --locked -q -p taxistream-worker
BENCH_DUCKDB_PYTHON="$bench_venv/bin/python" \
  "$CARGO_TARGET_DIR/release/taxistream-worker" bench \
  --rows "$rows" --seed 42 --data-dir "$data_dir" --repeats "$repeats"
