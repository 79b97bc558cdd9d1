# taxistream developer entry points. `make setup` then `make test` on a fresh
# Debian machine; see README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . scripts/env.sh &&

.PHONY: setup test test-external fmt fmt-check lint unit check-crds crds demo bench bench-operator

setup:
	bash scripts/setup.sh

## test: everything CI checks: formatting, clippy, all tests with real services.
test: fmt-check lint check-crds unit

## test-external: the #[ignore]d tests that need servers `make test` cannot start: a
## Cassandra (CASSANDRA_CONTACT_POINTS) and an Apache Kafka (KAFKA_FULL_BOOTSTRAP).
## Fails, saying which, unless both are set.
test-external:
	$(ENV) bash scripts/test-external.sh

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

## demo: the local job (read → validate → sort by pickup → window) on the real samples in
#   examples/data/, with the default settings (5-minute windows, 10 minutes of allowed lateness).
DEMO_OUT := $${CARGO_TARGET_DIR}/demo
demo:
	$(ENV) cargo build --locked -q -p taxistream-worker && mkdir -p $(DEMO_OUT) && \
	  "$$CARGO_TARGET_DIR/debug/taxistream-worker" run \
	    --input examples/data/yellow_tripdata_2025-01_head.parquet --max-table-rows 25 \
	    --dead-letters $(DEMO_OUT)/dead-letters.jsonl && \
	  "$$CARGO_TARGET_DIR/debug/taxistream-worker" run --no-progress \
	    --input examples/data/yellow_tripdata_2020-01_head.csv \
	    --group-by borough --window 1h \
	    --output $(DEMO_OUT)/results-2020-01.csv --dead-letters $(DEMO_OUT)/dead-letters-2020-01.jsonl && \
	  echo "results: $(DEMO_OUT)/results-2020-01.csv; dead letters: $(DEMO_OUT)/dead-letters*.jsonl"

## bench: the README's performance table from one run: `run` against DuckDB, each stage on
#   its own, and the stages as concurrent processes on the real services (scripts/bench.sh;
#   BENCH_ROWS=500000 for a quicker run).
bench:
	bash scripts/bench.sh

## bench-operator: the pipeline reconciler, 1,000 pipelines, in-memory API server (README, "Operator reference").
bench-operator:
	$(ENV) cargo run --locked -q -p taxistream-operator --example bench_operator

## crds: regenerate the CRD YAML (crds/ and the chart's crds/).
crds:
	$(ENV) cargo run --locked -q -p taxistream-crds --bin crdgen

## Images and a laptop cluster (README.md, "Run on kind").
# `make images CONTAINER_TOOL=podman` works too; IMAGE_TAG defaults to the chart's appVersion.
CONTAINER_TOOL ?= docker
IMAGE_REGISTRY ?= ghcr.io/taxistream
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/taxistream/Chart.yaml)
OPERATOR_IMAGE := $(IMAGE_REGISTRY)/taxistream-operator:$(IMAGE_TAG)
WORKER_IMAGE := $(IMAGE_REGISTRY)/taxistream-worker:$(IMAGE_TAG)
KIND_CLUSTER ?= taxistream
RELEASE_NAMESPACE ?= taxistream-system

.PHONY: images kind-up kind-load deploy dev-backends check-manifests

## images: the operator and worker images (multi-stage release builds, distroless runtime).
images:
	$(CONTAINER_TOOL) build -f images/operator.Dockerfile -t $(OPERATOR_IMAGE) .
	$(CONTAINER_TOOL) build -f images/worker.Dockerfile -t $(WORKER_IMAGE) .

## kind-up: a kind cluster from kind-config.yaml (kept if it already exists).
kind-up:
	kind get clusters | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml --wait 120s

## kind-load: the images `make images` built, into the kind nodes (no registry needed).
kind-load:
	kind load docker-image --name $(KIND_CLUSTER) $(OPERATOR_IMAGE) $(WORKER_IMAGE)

## deploy: CRDs (server-side, so upgrades apply too) and the chart with the images above.
deploy:
	$(ENV) kubectl apply --server-side --force-conflicts -f charts/taxistream/crds/
	$(ENV) helm upgrade --install taxistream charts/taxistream --namespace $(RELEASE_NAMESPACE) --create-namespace \
	  --set image.repository=$(IMAGE_REGISTRY)/taxistream-operator --set image.tag=$(IMAGE_TAG) \
	  --set workerImage.repository=$(IMAGE_REGISTRY)/taxistream-worker --set workerImage.tag=$(IMAGE_TAG) \
	  --wait --timeout 5m

## dev-backends: PostgreSQL, Kafka and Cassandra for kind, with the example's Secret, topics and sink.
dev-backends:
	$(ENV) kubectl apply -f examples/dev/

## check-manifests: the packaging checks alone (also part of `make test`).
check-manifests:
	bash scripts/check-manifests.sh
