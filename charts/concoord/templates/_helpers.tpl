{{/* Chart name, overridable. */}}
{{- define "concoord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name for the operator's objects (63 characters at most). */}}
{{- define "concoord.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "concoord.operatorName" -}}
{{- printf "%s-operator" (include "concoord.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "concoord.metricsServiceName" -}}
{{- printf "%s-operator-metrics" (include "concoord.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "concoord.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never include versions here. */}}
{{- define "concoord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "concoord.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "concoord.labels" -}}
helm.sh/chart: {{ include "concoord.chart" . }}
{{ include "concoord.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: concoord
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "concoord.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "concoord.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "concoord.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the operator must elect a leader: several replicas, or forced. */}}
{{- define "concoord.leaderElect" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.force }}true{{ end }}
{{- end }}
