#!/usr/bin/env bash
# Runs the whole test suite. Services the integration tests need are started
# here and stopped on exit, whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

# Packaging: chart, CRD examples, Dockerfiles, dashboard. Seconds, no services.
bash scripts/check-manifests.sh

# PostgreSQL and the Kafka broker for the worker integration tests; the tests
# read DATABASE_URL and KAFKA_BOOTSTRAP.
trap 'bash scripts/services.sh down' EXIT
eval "$(bash scripts/services.sh up)"

# No CQL server can be installed here: the Cassandra tests run only against
# one named by CASSANDRA_CONTACT_POINTS.
if [ -z "${CASSANDRA_CONTACT_POINTS:-}" ]; then
  echo "skipped: no Cassandra (CASSANDRA_CONTACT_POINTS unset): workers/tests/backends_cassandra.rs" >&2
fi

cargo test --workspace --locked
