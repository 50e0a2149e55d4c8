{{/*
Names, labels and images shared by every template.
The full name is cut to 52 characters so that "<fullname>-discovery" and "<fullname>-metrics" and the
Deployment's pod names stay valid DNS labels.
*/}}

{{/* The chart name (nameOverride replaces it). */}}
{{- define "pulsetrain.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The name of every object: fullnameOverride, else the release name when it already contains the chart name, else "<release>-<chart>". */}}
{{- define "pulsetrain.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "pulsetrain.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object the chart creates. */}}
{{- define "pulsetrain.labels" -}}
helm.sh/chart: {{ include "pulsetrain.chart" . }}
{{ include "pulsetrain.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pulsetrain
app.kubernetes.io/component: operator
{{- end }}

{{/* The labels that select the operator pod (immutable on the Deployment: keep them few). */}}
{{- define "pulsetrain.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pulsetrain.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "pulsetrain.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pulsetrain.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image; an empty tag means the chart's appVersion. */}}
{{- define "pulsetrain.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The default worker image (PULSETRAIN_WORKER_IMAGE); an empty tag means the chart's appVersion. */}}
{{- define "pulsetrain.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (default .Chart.AppVersion .Values.workerImage.tag) }}
{{- end }}

{{/* The operator's command line: log format, liveness endpoint, and one --namespace per watched namespace. */}}
{{- define "pulsetrain.command" -}}
- python
- -m
- pulsetrain_operator
- --log-format
- {{ .Values.logFormat }}
- --liveness
- http://0.0.0.0:8081/healthz
{{- range .Values.watchNamespaces }}
- --namespace
- {{ . }}
{{- end }}
{{- end }}

{{/* The restricted Pod Security Standard's container security context (also used by the test pod). */}}
{{- define "pulsetrain.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The pod-level security context of every pod the chart creates. */}}
{{- define "pulsetrain.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* A list of {name: ...} objects (image pull Secrets) as comma-separated names. */}}
{{- define "pulsetrain.names" -}}
{{- $names := list -}}
{{- range . -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}
