#!/usr/bin/env bash
# Runs the #[ignore]d tests: those that need servers `make test` cannot start
# here, a Cassandra (or ScyllaDB) and a full Apache Kafka. Name them with
#   CASSANDRA_CONTACT_POINTS=host:port[,host:port…]   (CASSANDRA_LOCAL_DATACENTER,
#                                                     default datacenter1)
#   KAFKA_FULL_BOOTSTRAP=host:port
# Without both it fails, saying which is missing: a run that skipped them
# must not look like a pass. PostgreSQL and the tansu broker the other tests
# use are started (and stopped) as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

missing=()
[ -n "${CASSANDRA_CONTACT_POINTS:-}" ] ||
  missing+=("CASSANDRA_CONTACT_POINTS (a Cassandra or ScyllaDB, e.g. 127.0.0.1:9042)")
[ -n "${KAFKA_FULL_BOOTSTRAP:-}" ] ||
  missing+=("KAFKA_FULL_BOOTSTRAP (an Apache Kafka broker, e.g. 127.0.0.1:19092)")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test-external: these tests need servers; set:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

trap 'bash scripts/services.sh down' EXIT
eval "$(bash scripts/services.sh up)"

cargo test --workspace --locked -- --ignored
