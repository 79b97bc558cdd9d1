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
The API access the operator needs, and nothing more: README.md, section
"RBAC the operator needs", lists each rule with the code that uses it, and
scripts/check-manifests.sh fails when the chart and that list differ.
Children are written by server-side apply, and the API server authorizes an
apply that creates an object as `create`, so the applied kinds need
create as well as patch.
*/}}
{{- define "taxistream.rules" -}}
# Its own kinds: watched; finalizers added and removed by JSON patch; a
# pipeline reads the KafkaTopics and CassandraSink it names.
- apiGroups: ["taxistream.dev"]
  resources: ["taxipipelines", "kafkatopics", "cassandrasinks"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["taxistream.dev"]
  resources: ["taxipipelines/status", "kafkatopics/status", "cassandrasinks/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion on a pipeline's children.
- apiGroups: ["taxistream.dev"]
  resources: ["taxipipelines/finalizers"]
  verbs: ["update"]
# A pipeline's children, applied server-side; the Deployments are watched for replica counts.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Secrets: the pipeline's TLS Secrets, and reading the user's connection Secrets.
# Every child is watched (label app.kubernetes.io/managed-by), and Secrets'
# metadata, so a settled pipeline is reconciled from memory.
- apiGroups: [""]
  resources: ["configmaps", "secrets", "serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The per-pipeline Role grants only what this role holds (RBAC forbids escalation).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Deleted when autoscaling is turned off, or the schedule removed.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* The leader-election Lease, in the release namespace only. */}}
{{- define "taxistream.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end -}}
