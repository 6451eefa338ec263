{{/* 50 characters leave room for the longest suffix ("-collector-migrate") within 63. */}}
{{- define "gatehouse.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "gateway") */}}
{{- define "gatehouse.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image of a component: (dict "ctx" $ "image" .Values.gateway.image) */}}
{{- define "gatehouse.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.registry .image.repository (default .ctx.Chart.AppVersion .ctx.Values.image.tag) -}}
{{- end -}}

{{- define "gatehouse.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "gatehouse.logEnv" -}}
- name: LOG
  value: {{ .Values.log.level | quote }}
- name: LOG_FORMAT
  value: {{ .Values.log.format | quote }}
{{- end -}}

{{- define "gatehouse.gatewayTLSSecret" -}}
{{- if .Values.gateway.tls.certManager.enabled -}}
{{- printf "%s-gateway-tls" (include "gatehouse.fullname" .) -}}
{{- else -}}
{{- .Values.gateway.tls.secretName -}}
{{- end -}}
{{- end -}}

{{/* The collector's ingest URL, as the gateway and the agent reach it. */}}
{{- define "gatehouse.collectorURL" -}}
{{- printf "%s://%s-collector.%s.svc:7443" (ternary "https" "http" (ne .Values.collector.tls.secretName "")) (include "gatehouse.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "gatehouse.clickhouseURL" -}}
{{- if .Values.clickhouse.enabled -}}
{{- printf "http://%s-clickhouse.%s.svc:8123" (include "gatehouse.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.collector.clickhouse.url -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.clickhouseSecret" -}}
{{- if .Values.clickhouse.enabled -}}
{{- printf "%s-clickhouse" (include "gatehouse.fullname" .) -}}
{{- else -}}
{{- .Values.collector.clickhouse.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* COLLECTOR_CLICKHOUSE_* and schema env shared by `collector serve` and `collector migrate`. */}}
{{- define "gatehouse.collectorClickHouseEnv" -}}
- name: COLLECTOR_CLICKHOUSE_URL
  value: {{ include "gatehouse.clickhouseURL" . | quote }}
- name: COLLECTOR_CLICKHOUSE_DATABASE
  value: {{ .Values.collector.clickhouse.database | quote }}
- name: COLLECTOR_CLICKHOUSE_COMPRESSION
  value: {{ .Values.collector.clickhouse.compression | quote }}
{{- with include "gatehouse.clickhouseSecret" . }}
- name: COLLECTOR_CLICKHOUSE_USER
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
- name: COLLECTOR_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- end }}
{{- with .Values.collector.clickhouse.cluster }}
- name: COLLECTOR_CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
- name: COLLECTOR_RECORDINGS_TTL_DAYS
  value: {{ .Values.collector.ttlDays.recordings | quote }}
- name: COLLECTOR_FRAMES_TTL_DAYS
  value: {{ .Values.collector.ttlDays.frames | quote }}
- name: COLLECTOR_ALERTS_TTL_DAYS
  value: {{ .Values.collector.ttlDays.alerts | quote }}
- name: COLLECTOR_ROLLUP_TTL_DAYS
  value: {{ .Values.collector.ttlDays.rollup | quote }}
- name: COLLECTOR_AUDIT_TTL_DAYS
  value: {{ .Values.collector.ttlDays.audit | quote }}
{{- end -}}

{{- define "gatehouse.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "gatehouse.restrictedPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A byte size (as the gateway parses it: B, KB/MB/GB/TB decimal, KiB/MiB/GiB/TiB) in bytes. */}}
{{- define "gatehouse.bytes" -}}
{{- $s := toString . -}}
{{- $units := dict "B" 1 "KB" 1000 "MB" 1000000 "GB" 1000000000 "TB" 1000000000000 "KiB" 1024 "MiB" 1048576 "GiB" 1073741824 "TiB" 1099511627776 -}}
{{- $n := regexFind "^[0-9]+" $s -}}
{{- $u := trimPrefix $n $s | default "B" -}}
{{- mul (atoi $n) (get $units $u) -}}
{{- end -}}
