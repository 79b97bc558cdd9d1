#!/usr/bin/env bash
# Packaging checks, run by scripts/test.sh (`make test`); takes seconds.
#   - helm lint of the chart, with the default values and with every option on;
#     every value in values.yaml is commented, and the all-options file sets it;
#   - `helm template` of both (plus namespaced RBAC) through
#     `kubernetes-validate --strict` for the oldest and newest Kubernetes we support;
#   - restricted Pod Security, probes, and RBAC equal to what README.md
#     documents, on the rendered chart;
#   - every manifest under examples/ against the CRD schemas (check-jsonschema)
#     or the Kubernetes schemas (kubernetes-validate);
#   - the Dockerfiles: COPY sources exist, binary names match Cargo targets;
#   - the Grafana dashboard queries only metrics the code registers.
# Tools come from scripts/setup.sh (helm, kubernetes-validate, check-jsonschema).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

KUBE_VERSIONS=(1.33.0 1.36.0)
CHART=charts/taxistream
ALL_OPTIONS="$CHART/ci/all-options-values.yaml"
RELEASE_NS=taxistream-system

for tool in helm kubernetes-validate check-jsonschema cargo; do
  command -v "$tool" >/dev/null || { echo "check-manifests: $tool not found; run make setup" >&2; exit 1; }
done
# The venv's Python has PyYAML (a kubernetes-validate dependency).
PY="$TOOLS_VENV/bin/python3"
"$PY" -c 'import yaml' || { echo "check-manifests: no PyYAML in $TOOLS_VENV; run make setup" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Every check runs even after one fails, so one run lists everything to fix.
failures=()
step() { printf '==> %s\n' "$*"; }
fail() { echo "FAIL $*" >&2; failures+=("$*"); }

# kubernetes-validate warns and passes on kinds it has no schema for; only the
# Prometheus Operator kinds may be unknown (check_packaging.py checks their shape).
validate() { # label files...
  local label="$1" out unknown v
  shift
  for v in "${KUBE_VERSIONS[@]}"; do
    if ! out="$(kubernetes-validate --strict --quiet -k "$v" "$@" 2>&1)"; then
      printf '%s\n' "$out" >&2
      fail "kubernetes-validate $v: $label"
      return 0
    fi
    if unknown="$(printf '%s\n' "$out" | grep "Couldn't find schema" | grep -v 'monitoring.coreos.com/v1')"; then
      printf '%s\n' "$unknown" >&2
      fail "kubernetes-validate $v: $label has objects of unknown kinds"
      return 0
    fi
  done
  echo "ok   kubernetes-validate --strict ${KUBE_VERSIONS[*]}: $label"
}

step "helm lint"
lint_ok=1
helm lint --strict --quiet "$CHART" >/dev/null || { helm lint --strict "$CHART" || true; fail "helm lint (default values)"; lint_ok=0; }
helm lint --strict --quiet "$CHART" -f "$ALL_OPTIONS" >/dev/null || { helm lint --strict "$CHART" -f "$ALL_OPTIONS" || true; fail "helm lint ($ALL_OPTIONS)"; lint_ok=0; }
[ "$lint_ok" = 1 ] && echo "ok   helm lint --strict: default values and $ALL_OPTIONS"
if helm package "$CHART" --destination "$work/package" >/dev/null; then
  echo "ok   helm package: $(basename "$work"/package/*.tgz)"
else
  fail "helm package"
fi

"$PY" scripts/check_packaging.py values || fail "values.yaml"

step "helm template | kubernetes-validate --strict"
render() { # name mode helm-args...
  local name="$1" mode="$2"
  shift 2
  if ! helm template taxistream "$CHART" --namespace "$RELEASE_NS" --include-crds "$@" >"$work/$name.yaml"; then
    fail "helm template $name"
    return 0
  fi
  validate "chart, $name" "$work/$name.yaml"
  "$PY" scripts/check_packaging.py chart "$work/$name.yaml" "$mode" || fail "chart, $name"
}
render default cluster
render all-options namespaced -f "$ALL_OPTIONS"
# The release namespace among the watched ones; one replica without leader election (no Lease Role).
render watch-release-ns namespaced --set "watchNamespaces={$RELEASE_NS,team-a}" --set replicaCount=1 --set leaderElection.enabled=false
# Values the chart must reject.
for bad in "replicaCount=0" "logging.format=xml" "image.pullPolicy=Sometimes" "unknownValue=1" \
  "watchNamespaces={Not_A_Namespace}" "watchNamespaces={a,a}" "leaderElection.enabled=false"; do
  if helm template taxistream "$CHART" --set "$bad" >/dev/null 2>&1; then
    fail "the chart accepts --set $bad"
    accepted_bad=1
  fi
done
[ -n "${accepted_bad:-}" ] || echo "ok   the chart rejects bad values"

# NOTES.txt renders only at install time; render it through a copy of the chart.
cp -r "$CHART" "$work/notes-chart"
mv "$work/notes-chart/templates/NOTES.txt" "$work/notes-chart/files/NOTES.txt"
printf '%s\n' 'notes: |' '  {{- tpl (.Files.Get "files/NOTES.txt") . | nindent 2 }}' >"$work/notes-chart/templates/notes.yaml"
for args in "" "-f $ALL_OPTIONS" "--set leaderElection.enabled=false --set replicaCount=1"; do
  # shellcheck disable=SC2086 # $args is a list of helm flags
  if ! notes="$(helm template taxistream "$work/notes-chart" --namespace "$RELEASE_NS" --show-only templates/notes.yaml $args)"; then
    fail "NOTES.txt does not render with ${args:-the default values}"
  elif grep -q '<no value>' <<<"$notes"; then
    fail "NOTES.txt prints <no value> with ${args:-the default values}"
  fi
done
echo "ok   NOTES.txt renders with the default, all-options and single-replica values"

step "examples/ against the CRD and Kubernetes schemas"
"$PY" scripts/check_packaging.py crd-schemas "$work/schemas" || fail "CRD schemas"
"$PY" scripts/check_packaging.py split-examples "$work/examples" || fail "examples/"
for dir in "$work"/examples/cr/*/; do
  [ -d "$dir" ] || continue
  kind="$(basename "$dir")"
  if [ ! -f "$work/schemas/$kind.json" ]; then
    fail "examples/: kind $kind has no CRD in $CHART/crds"
    continue
  fi
  files=("$dir"*.json)
  if out="$(check-jsonschema --schemafile "$work/schemas/$kind.json" "${files[@]}" 2>&1)"; then
    echo "ok   check-jsonschema: ${#files[@]} $kind objects under examples/ match the CRD schema"
  else
    printf '%s\n' "$out" >&2
    fail "examples/: $kind objects do not match the CRD schema"
  fi
done
if [ -s "$work/examples/builtin.yaml" ]; then
  validate "examples/ built-in objects" "$work/examples/builtin.yaml"
fi

step "the operator's objects (golden snapshots) as the API server and Pod Security see them"
snapshots=(operator/tests/snapshots/*.yaml)
if [ -e "${snapshots[0]}" ]; then
  validate "operator/tests/snapshots/" "${snapshots[@]}"
fi
"$PY" scripts/check_packaging.py snapshots || fail "operator snapshots"

step "Dockerfiles and dashboard"
"$PY" scripts/check_packaging.py dockerfiles || fail "Dockerfiles"
"$PY" scripts/check_packaging.py dashboard || fail "Grafana dashboard"

if [ "${#failures[@]}" -gt 0 ]; then
  printf 'check-manifests: %d check(s) failed:\n' "${#failures[@]}" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check-manifests: all packaging checks passed"
