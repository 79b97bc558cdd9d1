#!/usr/bin/env bash
# Runs the whole test suite. Services the integration tests need are started
# here and stopped on exit, whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

# PostgreSQL and the Kafka broker for the worker integration tests; the tests
# read DATABASE_URL and KAFKA_BOOTSTRAP.
trap 'bash scripts/services.sh down' EXIT
eval "$(bash scripts/services.sh up)"

cargo test --workspace --locked
