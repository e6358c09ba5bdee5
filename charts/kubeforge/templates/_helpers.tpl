{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "kubeforge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every resource: release name, plus the chart name unless it is in it. */}}
{{- define "kubeforge.fullname" -}}
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

{{/* Labels on every resource. */}}
{{- define "kubeforge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubeforge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeforge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component ("operator" or "mlflow"): pass (list $ "operator"). */}}
{{- define "kubeforge.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "kubeforge.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "kubeforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubeforge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The project image reference. */}}
{{- define "kubeforge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Name of the MLflow Deployment, Service and PVC. */}}
{{- define "kubeforge.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "kubeforge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the MLflow PVC. */}}
{{- define "kubeforge.mlflow.claimName" -}}
{{- default (include "kubeforge.mlflow.fullname" .) .Values.mlflow.persistence.existingClaim }}
{{- end }}

{{/* True when the MLflow server keeps anything (SQLite or artifacts) on the PVC. */}}
{{- define "kubeforge.mlflow.usesVolume" -}}
{{- if or (not (or .Values.mlflow.existingSecret .Values.mlflow.backendStoreUri)) (not .Values.mlflow.artifactsDestination) }}true{{ end }}
{{- end }}

{{/* Pod-level security context shared by every pod (restricted Pod Security Standard). */}}
{{- define "kubeforge.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context shared by every container. */}}
{{- define "kubeforge.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* The env var MLFLOW_TRACKING_URI for the operator, or nothing when no MLflow is configured. */}}
{{- define "kubeforge.trackingUriEnv" -}}
{{- if .Values.mlflow.enabled }}
- name: MLFLOW_TRACKING_URI
  value: {{ printf "http://%s.%s.svc:%d" (include "kubeforge.mlflow.fullname" .) .Release.Namespace (int .Values.mlflow.port) | quote }}
{{- else if .Values.mlflow.external.existingSecret }}
- name: MLFLOW_TRACKING_URI
  valueFrom:
    secretKeyRef:
      name: {{ .Values.mlflow.external.existingSecret }}
      key: {{ .Values.mlflow.external.existingSecretKey }}
{{- else if .Values.mlflow.external.trackingUri }}
- name: MLFLOW_TRACKING_URI
  value: {{ .Values.mlflow.external.trackingUri | quote }}
{{- end }}
{{- end }}
