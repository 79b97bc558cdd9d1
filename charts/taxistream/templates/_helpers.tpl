{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "taxistream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object the chart creates. */}}
{{- define "taxistream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "taxistream.operatorName" -}}
{{- printf "%s-operator" (include "taxistream.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "taxistream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "taxistream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taxistream
{{- end -}}

{{/* Labels that select the operator pods; never change them in an upgrade. */}}
{{- define "taxistream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taxistream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "taxistream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "taxistream.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "taxistream.leaseName" -}}
{{- default (printf "%s-leader" (include "taxistream.fullname" .)) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* `repository:tag` or `repository@digest`; the tag defaults to the appVersion. */}}
{{- define "taxistream.imageRef" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The API access the operator needs, and nothing more: docs/operator.md, section
"RBAC the operator needs", lists each rule with the code that uses it, and
scripts/check-manifests.sh fails when the two differ.
*/}}
{{- define "taxistream.rules" -}}
# Its own resources: watched, finalizers added and removed.
- apiGroups: ["taxistream.dev"]
  resources: ["taxipipelines", "kafkatopics", "cassandrasinks"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["taxistream.dev"]
  resources: ["taxipipelines/status", "kafkatopics/status", "cassandrasinks/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: ["taxistream.dev"]
  resources: ["taxipipelines/finalizers", "kafkatopics/finalizers", "cassandrasinks/finalizers"]
  verbs: ["update"]
# A pipeline's children, applied server-side and garbage-collected through owner references.
- apiGroups: [""]
  resources: ["configmaps", "secrets", "serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# The operator's leader-election Lease, and the lease rights the workers'
# per-pipeline Role grants (RBAC lets nobody grant what they do not hold).
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
{{- end -}}
