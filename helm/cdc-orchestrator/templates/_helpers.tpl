{{- define "cdc-orchestrator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cdc-orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cdc-orchestrator.labels" -}}
{{ include "cdc-orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* Whether the chart creates the pod's service account: when asked to, and with leader election when no existing
account is named (the Lease Role needs an account of its own to bind to, never the namespace's default). */}}
{{- define "cdc-orchestrator.createServiceAccount" -}}
{{- if or .Values.serviceAccount.create (and .Values.leaderElection.enabled (not .Values.serviceAccount.name)) -}}
true
{{- end -}}
{{- end -}}

{{- /* The service account the pod runs as: the chart's own when it creates one, else serviceAccount.name (empty: the
namespace's default). */}}
{{- define "cdc-orchestrator.serviceAccountName" -}}
{{- if include "cdc-orchestrator.createServiceAccount" . -}}
{{- .Values.serviceAccount.name | default (include "cdc-orchestrator.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* The Lease the replicas compete for: leaderElection.leaseName, else the release's full name, so that two releases
in one namespace never share a Lease. */}}
{{- define "cdc-orchestrator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "cdc-orchestrator.fullname" .) -}}
{{- end -}}
