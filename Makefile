# taxistream developer entry points. `make setup` then `make test` on a fresh
# Debian machine; see README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . scripts/env.sh &&

.PHONY: setup test fmt fmt-check lint unit check-crds crds demo bench

setup:
	bash scripts/setup.sh

## test: everything CI checks: formatting, clippy, all tests with real services.
test: fmt-check lint check-crds unit

fmt:
	$(ENV) cargo fmt --all

fmt-check:
	$(ENV) cargo fmt --all -- --check

lint:
	$(ENV) cargo clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(ENV) bash scripts/test.sh

## check-crds: the generated CRDs are valid Kubernetes objects, strictly.
check-crds:
	$(ENV) for v in 1.33.0 1.36.0; do kubernetes-validate --strict --quiet -k $$v crds/*.yaml; done

## crds: regenerate the CRD YAML (crds/ and the chart's crds/).
crds:
	$(ENV) cargo run --locked -q -p taxistream-crds --bin crdgen
