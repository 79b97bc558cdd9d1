#!/usr/bin/env bash
# The end-to-end part of `make bench`: the synthetic month through ingest
# (PostgreSQL), relay (Kafka) and aggregate (windows), on the real services,
# with the broker's raw produce rate measured in the same run.
#
#   BENCH_ROWS      rows of the synthetic month (5000000)
#   BENCH_DATA_DIR  where `taxistream-worker bench` keeps it (bench-data)
#   BENCH_PROFILE   cargo profile of the worker (release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

rows="${BENCH_ROWS:-5000000}"
data_dir="${BENCH_DATA_DIR:-bench-data}"
profile="${BENCH_PROFILE:-release}"

# Services this script starts are stopped again; ones already running (a
# developer's session) are left alone.
started_services=""
if bash scripts/services.sh status | grep -q "stopped"; then started_services=1; fi
work="$(mktemp -d)"
name="bench_$(date +%s)_$$"
cleanup() {
  if [ -n "${DATABASE_URL:-}" ]; then
    psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $name CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  if [ -n "$started_services" ]; then bash scripts/services.sh down; fi
}
trap cleanup EXIT
eval "$(bash scripts/services.sh up)"

if [ "$profile" = release ]; then
  cargo build --release --locked -q -p taxistream-worker
  bin="$CARGO_TARGET_DIR/release/taxistream-worker"
else
  cargo build --locked -q -p taxistream-worker
  bin="$CARGO_TARGET_DIR/debug/taxistream-worker"
fi

# The newest generator version (`bench` writes it when missing).
find_month() { ls -t "$data_dir"/yellow_tripdata_2023-01_synthetic_"${rows}"_42_v*.parquet 2>/dev/null | head -1; }
input="$(find_month || true)"
if [ -z "$input" ]; then
  "$bin" bench --rows "$rows" --data-dir "$data_dir" >/dev/null
  input="$(find_month)"
fi

printf '%s\n' "$DATABASE_URL" >"$work/pg-url"
cat >"$work/worker.yaml" <<YAML
pipeline: bench/$name
source: {dataset: yellow, inputs: []}
postgres: {urlFile: $work/pg-url, schema: $name, table: trips, sslMode: disable}
kafka: {bootstrapServers: "$KAFKA_BOOTSTRAP"}
topics: {trips: $name.trips, aggregates: $name.aggregates, deadLetters: $name.dlq}
aggregation: {windowSeconds: 300, slideSeconds: 300, allowedLatenessSeconds: 600, groupBy: pickupZone}
cassandra: {contactPoints: [], localDatacenter: dc1, keyspace: taxistream, table: unused, ttlSeconds: 0, consistency: LOCAL_ONE}
metricsPort: 0
YAML
RUST_LOG=warn "$bin" bench-e2e --config "$work/worker.yaml" --input "$input"
