#!/usr/bin/env bash
# Runs the whole test suite. Services the integration tests need are started
# here and stopped on exit, whatever the outcome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

cargo test --workspace --locked
