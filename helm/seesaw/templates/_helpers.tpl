{{/* Names, labels and the image reference shared by every template. */}}

{{- define "seesaw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "seesaw.fullname" -}}
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

{{- define "seesaw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "seesaw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "seesaw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "seesaw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: seesaw
{{- end -}}

{{/* The metrics Service's own labels: its component differs from the pods' it selects. */}}
{{- define "seesaw.metricsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "seesaw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: metrics
{{- end -}}

{{- define "seesaw.metricsLabels" -}}
{{ include "seesaw.metricsSelectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: seesaw
{{- end -}}

{{- define "seesaw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "seesaw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ClusterRole that job pods' checkpoint-engine sidecars are bound to. */}}
{{- define "seesaw.jobRoleName" -}}
{{- printf "%s-job" (include "seesaw.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "seesaw.peeringName" -}}
{{- default (include "seesaw.fullname" .) .Values.peering.name -}}
{{- end -}}

{{- define "seesaw.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the operator watches; empty when it watches all of them. */}}
{{- define "seesaw.watchedNamespaces" -}}
{{- if not .Values.watch.allNamespaces -}}
{{- .Values.watch.namespaces | uniq | join "," -}}
{{- end -}}
{{- end -}}
