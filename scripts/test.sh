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

# Tests that need a Cassandra or an Apache Kafka (which cannot be installed
# here) are #[ignore]d and listed as such by cargo: `make test-external` runs
# them against servers named by CASSANDRA_CONTACT_POINTS and KAFKA_FULL_BOOTSTRAP.
cargo test --workspace --locked
