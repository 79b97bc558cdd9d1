#!/usr/bin/env python3
"""Packaging checks that need more than a CLI call; scripts/check-manifests.sh runs them.

Each subcommand prints what it checked and exits non-zero with every problem
it found, each naming the file and object, so a failure says what to fix.

  crd-schemas OUT            JSON Schemas for check-jsonschema, from the chart's CRDs
  split-examples OUT         examples/**.yaml split into custom resources and built-in objects;
                             example pods meet the restricted Pod Security Standard
  chart RENDERED MODE        security, probes and RBAC of one `helm template` output
  dockerfiles                COPY sources, .dockerignore, binary names vs Cargo targets
  dashboard                  the Grafana dashboard queries metrics the code registers
  values                     values.yaml is commented; the all-options file turns everything on
  snapshots                  the operator's worker pods (golden snapshots) are restricted
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "taxistream"
RBAC_DOC = ROOT / "README.md"
RBAC_HEADING = "### RBAC the operator needs"
CRD_GROUP = "taxistream.dev"
IMAGES = ROOT / "images"
DASHBOARD = CHART / "files" / "dashboards" / "taxistream.json"


class Problems:
    """Collects failures so one run reports all of them."""

    def __init__(self, check: str) -> None:
        self.check = check
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def finish(self, summary: str) -> None:
        if self.items:
            print(f"FAIL {self.check}:", file=sys.stderr)
            for item in self.items:
                print(f"  - {item}", file=sys.stderr)
            sys.exit(1)
        print(f"ok   {self.check}: {summary}")


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- CRD schemas -------------------------------------------------------------


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def to_json_schema(node):
    """OpenAPI v3 (Kubernetes structural schema) to JSON Schema.

    `nullable` becomes a null alternative, int-or-string becomes an anyOf, the
    other x-kubernetes-* keys are dropped (their CEL rules are evaluated by the
    crds crate's tests), and objects with declared properties reject unknown
    fields, as `kubectl apply` (strict field validation) does.
    """
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **{k: v for k, v in out.items() if k != "type"}}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def cmd_crd_schemas(out: Path) -> None:
    problems = Problems("crd-schemas")
    out.mkdir(parents=True, exist_ok=True)
    kinds = []
    for crd_file in sorted((CHART / "crds").glob("*.yaml")):
        for crd in load_docs(crd_file):
            kind = crd["spec"]["names"]["kind"]
            served = [v for v in crd["spec"]["versions"] if v.get("served")]
            if len(served) != 1:
                problems.add(rel(crd_file), f"expected one served version, found {len(served)}")
                continue
            version = served[0]
            schema = to_json_schema(version["schema"]["openAPIV3Schema"])
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            schema["title"] = f"{kind} {crd['spec']['group']}/{version['name']}"
            # The API server adds these three to every custom resource schema.
            schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                    "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_SUBDOMAIN},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
            schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
            (out / f"{kind}.json").write_text(json.dumps(schema, indent=1))
            kinds.append(kind)
    if not kinds:
        problems.add(rel(CHART / "crds"), "no CRDs found; run `make crds`")
    problems.finish(f"{len(kinds)} schemas ({', '.join(kinds)})")


# --- examples ----------------------------------------------------------------


def cmd_split_examples(out: Path) -> None:
    """Writes custom resources to OUT/cr/<Kind>/ and other objects to OUT/builtin.yaml."""
    problems = Problems("split-examples")
    counts: dict[str, int] = {}
    builtin: list[str] = []
    files = sorted([*(ROOT / "examples").rglob("*.yaml"), *(ROOT / "examples").rglob("*.yml")])
    for path in files:
        try:
            docs = load_docs(path)
        except yaml.YAMLError as e:
            problems.add(rel(path), f"not YAML: {e}")
            continue
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                problems.add(f"{rel(path)} document {i + 1}", "not a Kubernetes object (no apiVersion/kind)")
                continue
            stem = f"{rel(path).replace('/', '__')}__{i + 1}"
            if doc["apiVersion"].split("/")[0] == CRD_GROUP:
                target = out / "cr" / doc["kind"]
                (target).mkdir(parents=True, exist_ok=True)
                (target / f"{stem}.json").write_text(json.dumps(doc))
                counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
            else:
                builtin.append(f"# {rel(path)} document {i + 1}\n" + yaml.safe_dump(doc))
                counts["(built-in)"] = counts.get("(built-in)", 0) + 1
                for pod in pod_specs(doc):
                    # examples/dev's namespace enforces the restricted standard.
                    check_restricted(f"{rel(path)} {doc['kind']} {doc['metadata']['name']}", pod, problems)
    out.mkdir(parents=True, exist_ok=True)
    (out / "builtin.yaml").write_text("---\n".join(builtin))
    if not any(k != "(built-in)" for k in counts):
        problems.add("examples/", "no taxistream custom resources found")
    problems.finish(f"{len(files)} files: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


# --- the rendered chart --------------------------------------------------------


def pod_specs(doc: dict):
    """(name, pod spec) of every pod template in a workload object."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        yield spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield spec.get("template", {}).get("spec", {})
    elif kind == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def check_restricted(where: str, pod: dict, problems: Problems) -> None:
    """The restricted Pod Security Standard (v1.33), as the admission plugin enforces it."""
    psc = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            problems.add(where, f"{host} is not allowed")
    for vol in pod.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.add(where, f"volume {vol.get('name')} uses {sorted(kinds - RESTRICTED_VOLUMES)}")
    if psc.get("runAsUser") == 0:
        problems.add(where, "pod runAsUser 0")
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    if not containers:
        problems.add(where, "no containers")
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            problems.add(cw, "runAsNonRoot must be true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            problems.add(cw, "runAsUser 0")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.add(cw, "allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.add(cw, "privileged")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.add(cw, "capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.add(cw, f"adds capabilities {caps.get('add')}")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.add(cw, f"seccompProfile must be RuntimeDefault, is {seccomp}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                problems.add(cw, "hostPort is not allowed")


def rules_of(doc: dict) -> set[tuple[str, str, str]]:
    out = set()
    for rule in doc.get("rules") or []:
        if rule.get("resourceNames") or rule.get("nonResourceURLs"):
            out.add(("!", "resourceNames/nonResourceURLs", str(rule)))
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    out.add((g, r, v))
    return out


def pod_labels(doc: dict) -> dict:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


SNAPSHOTS = ROOT / "operator" / "tests" / "snapshots"


def operator_children(problems: Problems) -> list[dict]:
    """The objects the operator builds for the example pipelines (its reviewed golden snapshots)."""
    docs = [d for f in sorted(SNAPSHOTS.glob("*.yaml")) for d in load_docs(f)]
    if not docs:
        problems.add(rel(SNAPSHOTS), "no golden snapshots of the operator's objects")
    return docs


def operator_cli() -> tuple[set[str], set[str]]:
    """(--flags, environment variables) of taxistream-operator, from its clap `Args`."""
    text = (ROOT / "operator" / "src" / "main.rs").read_text()
    flags, env_vars = {"--help", "--version"}, set()
    for attrs, field in re.findall(r"#\[arg\(((?:[^()\]]|\([^()]*\))*)\)\]\s*(?:pub\s+)?([a-z_][a-z0-9_]*)\s*:", text):
        named = re.search(r'long\s*=\s*"([^"]+)"', attrs)
        if re.search(r"\blong\b", attrs):
            flags.add("--" + (named.group(1) if named else field.replace("_", "-")))
        env_vars.update(re.findall(r'env\s*=\s*"([^"]+)"', attrs))
    return flags, env_vars


Triples = set[tuple[str, str, str]]


def documented_rules(problems: Problems) -> tuple[Triples, Triples]:
    """The (apiGroup, resource, verb) triples README.md documents:
    (everywhere the operator watches, only in the operator's own namespace).

    The section is a Markdown table whose header names the columns API group,
    Resources and Verbs; cells may list several comma-separated values in
    backticks, and the core group is written `""` or core. A resource cell that
    says "operator's namespace" (the leader-election Lease) is granted there only.
    """
    if not RBAC_DOC.exists():
        problems.add(rel(RBAC_DOC), "missing; it must document the operator's RBAC")
        return set(), set()
    text = RBAC_DOC.read_text()
    start = text.find(RBAC_HEADING + "\n")
    if start < 0:
        problems.add(rel(RBAC_DOC), f"no section {RBAC_HEADING!r}")
        return set(), set()
    section = text[start + len(RBAC_HEADING):]
    end = re.search(r"^#{1,3} ", section, re.M)
    section = section[: end.start()] if end else section
    rows = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    if len(rows) < 3:
        problems.add(rel(RBAC_DOC), f"section {RBAC_HEADING!r} has no table")
        return set(), set()

    def cells(row: str) -> list[str]:
        return [c.strip() for c in row.strip("|").split("|")]

    header = [h.lower() for h in cells(rows[0])]
    try:
        gi = next(i for i, h in enumerate(header) if "group" in h)
        ri = next(i for i, h in enumerate(header) if "resource" in h)
        vi = next(i for i, h in enumerate(header) if "verb" in h)
    except StopIteration:
        problems.add(rel(RBAC_DOC), f"table header {rows[0]!r} lacks API group / Resources / Verbs columns")
        return set(), set()

    def values(cell: str) -> list[str]:
        ticked = re.findall(r"`([^`]*)`", cell)
        raw = ticked if ticked else re.split(r"[,\s]+", cell)
        out = []
        for v in raw:
            for part in v.split(","):
                part = part.strip().strip('"')
                if part.lower() in ("core", "(core)", "\"\""):
                    part = ""
                if part or v.strip() in ('""', "core", "(core)"):
                    out.append(part)
        return out

    general: Triples = set()
    local: Triples = set()
    for row in rows[2:]:
        c = cells(row)
        if len(c) <= max(gi, ri, vi):
            problems.add(rel(RBAC_DOC), f"short table row {row!r}")
            continue
        target = local if "operator's namespace" in c[ri] or "own namespace" in c[ri] else general
        groups = values(c[gi]) or [""]
        for g in groups:
            for r in values(c[ri]):
                for v in values(c[vi]):
                    target.add((g, r, v))
    return general, local


def release_namespace(docs: list[dict]) -> str | None:
    """The namespace the operator Deployment is rendered into."""
    return next((d["metadata"].get("namespace") for d in docs if d["kind"] == "Deployment"), None)


def fmt_rules(triples: set[tuple[str, str, str]]) -> str:
    return ", ".join(f"{g or 'core'}/{r}:{v}" for g, r, v in sorted(triples))


def check_operator_deployment(docs: list[dict], by_kind: dict, problems: Problems) -> list[dict]:
    """Every pod the chart runs meets the restricted standard; the operator's also
    has a read-only root, its probes, requests, and the arguments it needs."""
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        problems.add("Deployment", f"expected one operator Deployment, found {len(deployments)}")
    for d in docs:
        for pod in pod_specs(d):
            check_restricted(f"{d['kind']} {d['metadata']['name']}", pod, problems)
    for dep in deployments:
        where = f"Deployment {dep['metadata']['name']}"
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            problems.add(where, "readOnlyRootFilesystem must be true")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or get.get("port") not in ("metrics", ports.get("metrics")):
                problems.add(where, f"{probe} must GET {path} on the metrics port, is {get}")
        if not (c.get("resources") or {}).get("requests"):
            problems.add(where, "no resource requests")
        grace = re.search(r"SHUTDOWN_GRACE[^=]*=[^;]*from_secs\((\d+)\)", (ROOT / "operator" / "src" / "main.rs").read_text())
        if grace and pod.get("terminationGracePeriodSeconds", 30) <= int(grace.group(1)):
            problems.add(where, f"terminationGracePeriodSeconds must exceed the operator's {grace.group(1)} s shutdown grace")
        args = c.get("args") or []
        for flag in ("--worker-image=", "--log-format="):
            if not any(a.startswith(flag) for a in args):
                problems.add(where, f"no {flag}… argument")
        if not c.get("image") or ":" not in c["image"].split("/")[-1] and "@" not in c["image"]:
            problems.add(where, f"image {c.get('image')!r} is not pinned by tag or digest")
        sa = pod.get("serviceAccountName")
        if not any(s["metadata"]["name"] == sa for s in by_kind.get("ServiceAccount", [])):
            problems.add(where, f"ServiceAccount {sa} is not part of the chart")
        svc_ok = any(
            any(p.get("targetPort") in ("metrics", ports.get("metrics")) for p in s["spec"].get("ports", []))
            and all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in s["spec"]["selector"].items())
            for s in by_kind.get("Service", [])
        )
        if not svc_ok:
            problems.add(where, "no Service selects its pods on the metrics port")
    return deployments


def check_monitor_shapes(by_kind: dict, problems: Problems) -> None:
    """Monitoring objects are not in kubernetes-validate's schemas: check their shape here."""
    for kind, endpoints in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")):
        for m in by_kind.get(kind, []):
            where = f"{kind} {m['metadata']['name']}"
            if m["apiVersion"] != "monitoring.coreos.com/v1":
                problems.add(where, f"apiVersion {m['apiVersion']}")
            spec = m.get("spec") or {}
            if not (spec.get("selector") or {}).get("matchLabels"):
                problems.add(where, "no selector.matchLabels")
            eps = spec.get(endpoints) or []
            if not eps or not all(e.get("port") and e.get("path") == "/metrics" for e in eps):
                problems.add(where, f"{endpoints} must name a port and path /metrics")


def check_worker_monitoring(by_kind: dict, children: list[dict], problems: Problems) -> None:
    """What the operator creates (its golden snapshots) against what the chart
    assumes: the PodMonitor finds the worker pods and adds the labels the
    dashboard and the HPAs' external metric select by."""
    worker_pods = [
        (d, pod) for d in children for pod in pod_specs(d)
    ]
    for m in by_kind.get("PodMonitor", []):
        where = f"PodMonitor {m['metadata']['name']}"
        spec = m.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels", {})
        selected = [
            (d, pod) for d, pod in worker_pods
            if all(pod_labels(d).get(k) == v for k, v in selector.items())
        ]
        if len(selected) != len(worker_pods) or not worker_pods:
            missed = sorted({d["metadata"]["name"] for d, _ in worker_pods} - {d["metadata"]["name"] for d, _ in selected})
            problems.add(where, f"selector {selector} misses the worker pods of {missed or 'every snapshot'}")
        ports = {p.get("name") for _, pod in worker_pods for c in pod.get("containers", []) for p in c.get("ports") or []}
        for ep in spec.get("podMetricsEndpoints") or []:
            if ep.get("port") not in ports:
                problems.add(where, f"scrapes port {ep.get('port')!r}; worker pods name {sorted(p for p in ports if p)}")
            for r in ep.get("relabelings") or []:
                for source in r.get("sourceLabels") or []:
                    label = source.removeprefix("__meta_kubernetes_pod_label_")
                    if source != label and not all(
                        any(re.sub(r"[^a-zA-Z0-9_]", "_", k) == label for k in pod_labels(d)) for d, _ in worker_pods
                    ):
                        problems.add(where, f"relabels from pod label {label}, which not every worker pod has")
            targets = {r.get("targetLabel") for r in ep.get("relabelings") or []}
            for label in sorted({"pipeline", "stage"} - targets):
                problems.add(where, f"port {ep.get('port')}: no relabeling to the `{label}` label the dashboard and HPAs select by")
            if not ep.get("honorLabels"):
                problems.add(where, f"port {ep.get('port')}: honorLabels must keep the series' own `stage`")
    # The HPAs' external metric selectors use labels a scrape through the PodMonitor has.
    if by_kind.get("PodMonitor"):
        provided = {"namespace"} | {
            r.get("targetLabel") for m in by_kind["PodMonitor"] for ep in m["spec"].get("podMetricsEndpoints") or []
            for r in ep.get("relabelings") or []
        }
        for d in children:
            if d["kind"] != "HorizontalPodAutoscaler":
                continue
            for metric in d["spec"].get("metrics") or []:
                ext = metric.get("external") or {}
                labels = set(((ext.get("metric") or {}).get("selector") or {}).get("matchLabels") or {})
                if labels - provided:
                    problems.add(
                        f"HPA {d['metadata']['name']}",
                        f"selects {ext['metric'].get('name')} by {sorted(labels - provided)}, which the PodMonitor does not add",
                    )


def check_operator_can_apply(by_kind: dict, children: list[dict], problems: Problems) -> None:
    """Every child kind is applied (server-side apply needs create and patch), and the
    workers' Role grants nothing the operator lacks (RBAC forbids escalation)."""
    operator_rules = set().union(*(
        rules_of(r) for r in (by_kind.get("ClusterRole") or by_kind.get("Role") or [])
        if not r["metadata"]["name"].endswith("-leader-election")
    ))
    for d in children:
        group = d["apiVersion"].rpartition("/")[0]
        resource = d["kind"].lower() + "s"
        for verb in ("create", "patch"):
            if (group, resource, verb) not in operator_rules:
                problems.add("RBAC", f"the operator creates {d['kind']} {d['metadata']['name']} but may not {verb} {group or 'core'}/{resource}")
        if d["kind"] == "Role":
            for rule in d.get("rules") or []:
                for g in rule.get("apiGroups") or []:
                    for r in rule.get("resources") or []:
                        for v in rule.get("verbs") or []:
                            if (g, r, v) not in operator_rules:
                                problems.add("RBAC", f"worker Role {d['metadata']['name']} grants {g or 'core'}/{r}:{v}, which the operator lacks, so it cannot create the Role")


def check_operator_cli(deployments: list[dict], problems: Problems) -> None:
    """The operator's flags and environment, as its clap definition spells them."""
    flags, env_vars = operator_cli()
    for dep in deployments:
        c = dep["spec"]["template"]["spec"]["containers"][0]
        for arg in c.get("args") or []:
            flag = arg.split("=", 1)[0]
            if flag.startswith("--") and flag not in flags:
                problems.add(f"Deployment {dep['metadata']['name']}", f"{flag} is not a taxistream-operator flag ({sorted(flags)})")
        for e in c.get("env") or []:
            if e["name"] in ("POD_NAME", "POD_NAMESPACE") and e["name"] not in env_vars:
                problems.add(f"Deployment {dep['metadata']['name']}", f"sets {e['name']}, which the operator does not read")


def check_dashboard_configmaps(by_kind: dict, problems: Problems) -> None:
    """Dashboard ConfigMaps hold JSON with panels."""
    for cm in by_kind.get("ConfigMap", []):
        for key, value in (cm.get("data") or {}).items():
            if key.endswith(".json"):
                try:
                    if not json.loads(value).get("panels"):
                        problems.add(f"ConfigMap {cm['metadata']['name']}", f"{key} has no panels")
                except json.JSONDecodeError as e:
                    problems.add(f"ConfigMap {cm['metadata']['name']}", f"{key} is not JSON: {e}")


def check_rbac(
    docs: list[dict], by_kind: dict, deployments: list[dict], mode: str, problems: Problems
) -> tuple[int, int, int]:
    """Exactly what the operator documents that it uses, no more, no less:
    (roles checked, documented triples, documented Lease triples)."""
    documented, documented_local = documented_rules(problems)
    lease_roles = [r for r in by_kind.get("Role", []) if r["metadata"]["name"].endswith("-leader-election")]
    if mode == "cluster":
        roles = by_kind.get("ClusterRole", [])
        if len(by_kind.get("Role", [])) != len(lease_roles):
            problems.add("Role", "cluster mode renders no namespaced Roles but the Lease's")
        bindings = [*by_kind.get("ClusterRoleBinding", []), *by_kind.get("RoleBinding", [])]
    else:
        roles = [r for r in by_kind.get("Role", []) if r not in lease_roles]
        if by_kind.get("ClusterRole"):
            problems.add("ClusterRole", "watchNamespaces is set, yet a ClusterRole is rendered")
        bindings = by_kind.get("RoleBinding", [])
    if not roles:
        problems.add("RBAC", f"no {'ClusterRole' if mode == 'cluster' else 'Role'} rendered")
    election = any(a == "--lease-name" or a.startswith("--lease-name=") for d in deployments
                   for a in d["spec"]["template"]["spec"]["containers"][0].get("args") or [])
    if election and len(lease_roles) != 1:
        problems.add("RBAC", f"leader election is on: expected one leader-election Role, found {len(lease_roles)}")
    sa_names = {s["metadata"]["name"] for s in by_kind.get("ServiceAccount", [])}
    for role in [*roles, *lease_roles]:
        where = f"{role['kind']} {role['metadata'].get('namespace', '')}/{role['metadata']['name']}"
        granted = rules_of(role)
        expected = documented_local if role in lease_roles else documented
        if role in lease_roles and role["metadata"].get("namespace") != release_namespace(docs):
            problems.add(where, "the Lease Role belongs in the release namespace")
        if expected and granted != expected:
            extra, missing = granted - expected, expected - granted
            if extra:
                hint = ""
                if all(v == "create" and (g, r, "patch") in expected for g, r, v in extra):
                    hint = (
                        " (the operator creates these by server-side apply, which the API server"
                        " authorizes as `create`: k8s.io/apiserver endpoints/handlers/patch.go;"
                        f" {rel(RBAC_DOC)} must list `create` for them)"
                    )
                problems.add(where, f"grants more than {rel(RBAC_DOC)} documents: {fmt_rules(extra)}{hint}")
            if missing:
                problems.add(where, f"lacks what {rel(RBAC_DOC)} documents: {fmt_rules(missing)}")
        if any(g == "*" or r == "*" or v in ("*", "escalate", "bind", "impersonate") for g, r, v in granted):
            problems.add(where, "wildcards, escalate, bind and impersonate are never needed")
        bound = [
            b for b in bindings
            if b["roleRef"]["kind"] == role["kind"] and b["roleRef"]["name"] == role["metadata"]["name"]
            and b["metadata"].get("namespace") == role["metadata"].get("namespace")
        ]
        if not bound:
            problems.add(where, "is bound to nothing")
        for b in bound:
            for subject in b.get("subjects") or []:
                if subject.get("kind") != "ServiceAccount" or (sa_names and subject.get("name") not in sa_names):
                    problems.add(f"{b['kind']} {b['metadata']['name']}", f"binds unexpected subject {subject}")
    if mode == "namespaced":
        namespaces = sorted(r["metadata"].get("namespace") for r in roles)
        if len(set(namespaces)) != len(namespaces):
            problems.add("Role", f"duplicate Roles in {namespaces}")
    return len(roles), len(documented), len(documented_local)


def cmd_chart(rendered: Path, mode: str) -> None:
    """mode: `cluster` (ClusterRole expected) or `namespaced` (Roles per watched namespace)."""
    problems = Problems(f"chart ({rendered.name})")
    docs = load_docs(rendered)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    children = operator_children(problems)
    deployments = check_operator_deployment(docs, by_kind, problems)
    check_monitor_shapes(by_kind, problems)
    check_worker_monitoring(by_kind, children, problems)
    check_operator_can_apply(by_kind, children, problems)
    check_operator_cli(deployments, problems)
    check_dashboard_configmaps(by_kind, problems)
    n_roles, n_documented, n_local = check_rbac(docs, by_kind, deployments, mode, problems)
    problems.finish(
        f"{len(docs)} objects; restricted pods, probes; {n_roles} {mode} role(s) grant exactly the "
        f"{n_documented} + {n_local} (Lease) documented (group, resource, verb) triples"
        + ("; the PodMonitor selects the operator's worker pods" if by_kind.get("PodMonitor") else "")
    )


def cmd_snapshots() -> None:
    """The worker pods the operator builds run in namespaces that enforce the
    restricted standard (examples/dev does)."""
    problems = Problems("operator snapshots")
    children = operator_children(problems)
    subcommands = worker_subcommands()
    pods = 0
    for d in children:
        for pod in pod_specs(d):
            where = f"{d['kind']} {d['metadata']['name']}"
            check_restricted(where, pod, problems)
            pods += 1
            # The worker image's ENTRYPOINT is the binary; the operator passes the stage as args.
            for c in pod.get("containers") or []:
                if "taxistream-worker" not in c.get("image", ""):
                    continue
                if c.get("command"):
                    problems.add(f"{where} container {c['name']}", "sets command; the image's ENTRYPOINT is taxistream-worker")
                args = c.get("args") or []
                if not args or args[0] not in subcommands:
                    problems.add(
                        f"{where} container {c['name']}",
                        f"runs `taxistream-worker {' '.join(args)}`, but its subcommands are {sorted(subcommands)}",
                    )
    problems.finish(
        f"{len(children)} objects; {pods} pod templates meet the restricted standard and run worker subcommands"
    )


def worker_subcommands() -> set[str]:
    """Subcommands of taxistream-worker: the variants of its clap `Command` enum, kebab-cased."""
    text = (ROOT / "workers" / "src" / "main.rs").read_text()
    m = re.search(r"enum Command\s*\{(.*?)\n\}", text, re.S)
    if not m:
        return set()
    variants = re.findall(r"^\s*([A-Z][A-Za-z0-9]*)\s*[(,{]", m.group(1), re.M)
    return {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower() for v in variants}


# --- Dockerfiles -------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def dockerignore_excludes(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether .dockerignore keeps `path` (or a parent of it) out of the build context."""
    excluded = False
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, pattern in patterns:
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def cmd_dockerfiles() -> None:
    problems = Problems("dockerfiles")
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )
    bins = {
        p["name"]: {t["name"] for t in p["targets"] if "bin" in t["kind"]}
        for p in meta["packages"]
    }
    rust_version = max((p.get("rust_version") or "0") for p in meta["packages"])
    ignore_file = ROOT / ".dockerignore"
    patterns: list[tuple[bool, str]] = []
    if ignore_file.exists():
        for line in ignore_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                negate = line.startswith("!")
                patterns.append((negate, os.path.normpath(line.lstrip("!")).lstrip("/")))
    dockerfiles = sorted(IMAGES.glob("*.Dockerfile"))
    if not dockerfiles:
        problems.add(rel(IMAGES), "no *.Dockerfile")
    built: dict[str, str] = {}
    copied_by: dict[str, set[str]] = {}
    for df in dockerfiles:
        name = rel(df)
        copied_by[name] = set()
        instr = dockerfile_instructions(df)
        stages: list[list[tuple[int, str, str]]] = []
        for item in instr:
            if item[1] == "FROM":
                stages.append([])
            if not stages:
                if item[1] != "ARG":
                    problems.add(f"{name}:{item[0]}", f"{item[1]} before the first FROM")
                continue
            stages[-1].append(item)
        if len(stages) < 2:
            problems.add(name, "must be multi-stage (build, then a small runtime image)")
            continue
        stage_names = set()
        built_bin = None
        for stage in stages:
            line, _, args = stage[0]
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0]
            if len(words) >= 3 and words[1].upper() == "AS":
                stage_names.add(words[2])
            if image not in stage_names:
                tag = image.rsplit("/", 1)[-1]
                if "@" not in tag and (":" not in tag or tag.endswith(":latest")):
                    problems.add(f"{name}:{line}", f"base image {image} is not pinned by tag")
                m = re.match(r".*/rust:(\d+\.\d+)", image)
                if m and tuple(map(int, m.group(1).split("."))) < tuple(map(int, rust_version.split(".")[:2])):
                    problems.add(f"{name}:{line}", f"{image} is older than the workspace rust-version {rust_version}")
            for n, word, rest in stage[1:]:
                where = f"{name}:{n}"
                if word in ("COPY", "ADD"):
                    flags = [w for w in rest.split() if w.startswith("--")]
                    paths = [w for w in rest.split() if not w.startswith("--")]
                    if word == "ADD":
                        problems.add(where, "use COPY; ADD fetches URLs and unpacks archives implicitly")
                    if any(f.startswith("--from=") for f in flags):
                        continue
                    for src in paths[:-1]:
                        copied_by[name].add(Path(src).parts[0])
                        if not list(ROOT.glob(src)):
                            problems.add(where, f"COPY source {src} does not exist")
                        elif dockerignore_excludes(src, patterns):
                            problems.add(where, f"COPY source {src} is excluded by .dockerignore")
                if word == "RUN" and "cargo build" in rest:
                    pkg = re.search(r"(?:-p|--package)[ =](\S+)", rest)
                    binary = re.search(r"--bin[ =](\S+)", rest)
                    if "--release" not in rest:
                        problems.add(where, "cargo build without --release")
                    if "--locked" not in rest:
                        problems.add(where, "cargo build without --locked")
                    if not pkg or not binary:
                        problems.add(where, "cargo build must name -p <package> and --bin <binary>")
                        continue
                    if pkg.group(1) not in bins:
                        problems.add(where, f"package {pkg.group(1)} is not in the workspace ({sorted(bins)})")
                    elif binary.group(1) not in bins[pkg.group(1)]:
                        problems.add(where, f"package {pkg.group(1)} has no binary {binary.group(1)} (has {sorted(bins[pkg.group(1)])})")
                    if f"target/release/{binary.group(1)}" not in rest:
                        problems.add(where, f"copies a binary other than target/release/{binary.group(1)}")
                    built_bin = binary.group(1)
        final = stages[-1]
        final_words = {w for _, w, _ in final}
        if "RUN" in final_words:
            problems.add(name, "the runtime stage has RUN: it must not need a shell")
        users = [r for _, w, r in final if w == "USER"]
        if not users or users[-1].split(":")[0] in ("0", "root"):
            problems.add(name, "the runtime stage must set a non-root USER")
        entry = [(n, r) for n, w, r in final if w == "ENTRYPOINT"]
        if not entry:
            problems.add(name, "no ENTRYPOINT in the runtime stage")
        else:
            n, r = entry[-1]
            try:
                argv = json.loads(r)
            except json.JSONDecodeError:
                argv = None
            if not isinstance(argv, list):
                problems.add(f"{name}:{n}", "ENTRYPOINT must be exec form (JSON), there is no shell")
            elif built_bin is None or Path(argv[0]).name != built_bin:
                problems.add(f"{name}:{n}", f"ENTRYPOINT {argv[0]} is not the binary built ({built_bin})")
            elif not any(w == "COPY" and "--from=" in r2 and r2.split()[-1] == argv[0] for _, w, r2 in final):
                problems.add(f"{name}:{n}", f"nothing copies {argv[0]} into the runtime image")
        if built_bin:
            built[built_bin] = name
    for package, names in bins.items():
        for b in names:
            if b not in built and b.startswith("taxistream-") and package == b:
                problems.add(rel(IMAGES), f"no image builds {b} (package {package})")

    # Sources the crates embed at compile time must be inside the build context the images copy.
    copied = set.intersection(*copied_by.values()) if copied_by else set()
    for crate in ("crds", "operator", "workers"):
        for src in (ROOT / crate / "src").rglob("*.rs"):
            text = src.read_text()
            embedded = [(src.parent / m) for m in re.findall(r'(?:include_str|include_bytes)!\(\s*"([^"]+)"', text)]
            # sqlx::migrate! paths are relative to the crate root.
            embedded += [(ROOT / crate / m) for m in re.findall(r'migrate!\(\s*"([^"]+)"', text)]
            for path in embedded:
                target = path.resolve()
                if not target.exists():
                    problems.add(rel(src), f"embeds {path}, which does not exist")
                if target.is_relative_to(ROOT) and target.relative_to(ROOT).parts[0] not in copied:
                    problems.add(rel(src), f"embeds {rel(target)}, which the image builds do not copy")

    # `make images` builds every Dockerfile.
    dry = subprocess.run(["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True)
    if dry.returncode != 0:
        problems.add("Makefile", f"`make -n images` failed: {dry.stderr.strip()}")
    else:
        for df in dockerfiles:
            if rel(df) not in dry.stdout:
                problems.add("Makefile", f"`make images` does not build {rel(df)}")
    problems.finish(f"{len(dockerfiles)} Dockerfiles build {', '.join(sorted(built))}")


# --- Grafana dashboard ---------------------------------------------------------


def registered_metrics() -> set[str]:
    """Metric names the Rust code registers with prometheus-client, with their prefixes."""
    names = set()
    for crate in ("operator", "workers"):
        for src in (ROOT / crate / "src").rglob("*.rs"):
            text = src.read_text()
            prefixes = re.findall(r'(?:with_prefix|sub_registry_with_prefix)\(\s*"([a-z0-9_]+)"', text) or [""]
            for m in re.finditer(r'\.register(?:_with_unit)?\(\s*"([a-z0-9_]+)"', text):
                for p in prefixes:
                    names.add(f"{p}_{m.group(1)}" if p else m.group(1))
    return names


def cmd_dashboard() -> None:
    problems = Problems("dashboard")
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problems.add(rel(DASHBOARD), str(e))
        problems.finish("")
    known = registered_metrics()
    exprs = []
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            exprs.append((panel.get("title"), t.get("expr", "")))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            exprs.append((f"variable {var['name']}", var.get("definition", "")))
    used = set()
    for title, expr in exprs:
        for name in re.findall(r"\b(taxistream_[a-z0-9_]+)", expr):
            used.add(name)
            base = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
            if base not in known:
                problems.add(f"{rel(DASHBOARD)} {title!r}", f"{name}: no metric {base} is registered in operator/ or workers/")
    titles = " ".join(p.get("title", "").lower() for p in dash.get("panels", []))
    for topic in ("throughput", "consumer lag", "window emit latency", "dead letters", "reconcile errors"):
        if topic not in titles:
            problems.add(rel(DASHBOARD), f"no panel about {topic}")
    problems.finish(f"{len(exprs)} queries over {len(used)} metrics, all registered in the code")


# --- values.yaml ---------------------------------------------------------------


def cmd_values() -> None:
    """Every value in values.yaml has a comment, and ci/all-options-values.yaml sets
    every option that is off or empty by default."""
    problems = Problems("values")
    path = CHART / "values.yaml"
    lines = path.read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, commented) of open mappings
    keys = 0
    for n, line in enumerate(lines, 1):
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):(\s.*|)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        prev = lines[n - 2].strip() if n > 1 else ""
        commented = prev.startswith("#")
        keys += 1
        if not commented and not any(c for _, c in stack):
            value = m.group(3).strip()
            if value:  # a mapping with children may go uncommented; its leaves may not
                problems.add(f"{rel(path)}:{n}", f"{m.group(2)} has no comment")
        stack.append((indent, commented))

    defaults = yaml.safe_load(path.read_text())
    all_options = yaml.safe_load((CHART / "ci" / "all-options-values.yaml").read_text())

    def walk(d, o, prefix):
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                walk(v, (o or {}).get(k) if isinstance(o, dict) else None, name + ".")
                continue
            other = o.get(k) if isinstance(o, dict) else None
            if v in (False, "", [], {}) and not other:
                problems.add("ci/all-options-values.yaml", f"{name} is off or empty by default and not set here")

    walk(defaults, all_options, "")
    problems.finish(f"{keys} keys commented; all-options sets every optional value")


def main(argv: list[str]) -> None:
    cmds = {
        "crd-schemas": lambda a: cmd_crd_schemas(Path(a[0])),
        "split-examples": lambda a: cmd_split_examples(Path(a[0])),
        "chart": lambda a: cmd_chart(Path(a[0]), a[1]),
        "dockerfiles": lambda a: cmd_dockerfiles(),
        "dashboard": lambda a: cmd_dashboard(),
        "values": lambda a: cmd_values(),
        "snapshots": lambda a: cmd_snapshots(),
    }
    if not argv or argv[0] not in cmds:
        sys.exit(__doc__)
    cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
