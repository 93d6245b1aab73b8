{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "chaingate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: release name, plus the chart name unless already in it. */}}
{{- define "chaingate.fullname" -}}
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

{{/* chart label value */}}
{{- define "chaingate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "chaingate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Values.app.name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "chaingate.labels" -}}
helm.sh/chart: {{ include "chaingate.chart" . }}
{{ include "chaingate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "chaingate.name" . }}
{{- end }}

{{/* Name of the Secret holding a domain's client secret. Call with (dict "root" $ "name" $name "domain" $d). */}}
{{- define "chaingate.secretName" -}}
{{- if .domain.clientSecret.existingSecret }}
{{- .domain.clientSecret.existingSecret }}
{{- else }}
{{- printf "%s-%s" (include "chaingate.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* chaingate.toml, rendered from values. Values are written with toJson: a JSON string,
number or boolean is also a valid TOML value. */}}
{{- define "chaingate.toml" -}}
# Rendered by the chaingate Helm chart; keys are documented in chaingate's README.
listen = {{ printf "0.0.0.0:%d" (int .Values.chaingate.httpPort) | quote }}
admin_listen = {{ printf "0.0.0.0:%d" (int .Values.chaingate.adminPort) | quote }}
{{- range $name, $d := .Values.chaingate.domains }}

[domains.{{ $name | quote }}]
{{- range $k, $v := $d.settings }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- if dig "serviceAccountToken" "audience" "" $d }}
client_assertion_file = {{ printf "%s/%s" $.Values.chaingate.tokensDir $name | quote }}
{{- else }}
client_secret_file = {{ printf "%s/%s/%s" $.Values.chaingate.secretsDir $name $d.clientSecret.key | quote }}
{{- end }}
{{- end }}
{{- range $.Values.chaingate.routes }}

[[routes]]
{{- range $k, $v := . }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- if not (hasKey . "upstream") }}
upstream = {{ printf "http://127.0.0.1:%d" (int $.Values.app.port) | quote }}
{{- end }}
{{- end }}
{{- range $table := list "cache" "timeouts" "limits" "shutdown" "log" "protected_resource" }}
{{- with index $.Values.chaingate.config $table }}

[{{ $table }}]
{{- range $k, $v := . }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- end }}
{{- $shared := .Values.chaingate.sharedCache }}
{{- if or $shared.url $shared.clusterNodes }}

[cache.shared]
{{- if $shared.url }}
url = {{ $shared.url | quote }}
{{- else }}
cluster_nodes = {{ toJson $shared.clusterNodes }}
{{- end }}
encryption_key_file = {{ printf "%s/shared-cache/%s" .Values.chaingate.secretsDir $shared.encryptionKey.key | quote }}
{{- range $k, $v := $shared.settings }}
{{ $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{ end }}

{{/* The chaingate container. Call with (dict "root" $ "native" true|false). */}}
{{- define "chaingate.container" -}}
{{- $v := .root.Values -}}
- name: chaingate
  image: "{{ $v.chaingate.image.repository }}:{{ $v.chaingate.image.tag | default .root.Chart.AppVersion }}"
  imagePullPolicy: {{ $v.chaingate.image.pullPolicy }}
  {{- if .native }}
  # Native sidecar: started before the app containers, stopped after them.
  restartPolicy: Always
  {{- end }}
  args: ["run", "--config", "/etc/chaingate/chaingate.toml"]
  env:
    - name: RUST_LOG
      value: {{ $v.chaingate.logLevel | quote }}
    {{- with $v.chaingate.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: chaingate-http
      containerPort: {{ $v.chaingate.httpPort }}
      protocol: TCP
    - name: chaingate-admin
      containerPort: {{ $v.chaingate.adminPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /ready
      port: chaingate-admin
    {{- toYaml $v.chaingate.startupProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /ready
      port: chaingate-admin
    {{- toYaml $v.chaingate.readinessProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /live
      port: chaingate-admin
    {{- toYaml $v.chaingate.livenessProbe | nindent 4 }}
  resources:
    {{- toYaml $v.chaingate.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: chaingate-config
      mountPath: /etc/chaingate
      readOnly: true
    {{- $projected := false }}
    {{- range $name, $d := $v.chaingate.domains }}
    {{- if dig "serviceAccountToken" "audience" "" $d }}
    {{- $projected = true }}
    {{- else }}
    - name: {{ printf "secret-%s" $name | trunc 63 | trimSuffix "-" }}
      mountPath: {{ printf "%s/%s" $v.chaingate.secretsDir $name }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- if $projected }}
    # Projected service account tokens, one file per secretless domain; the kubelet rotates
    # them by swapping the directory's ..data symlink (a directory mount, never subPath).
    - name: sa-tokens
      mountPath: {{ $v.chaingate.tokensDir }}
      readOnly: true
    {{- end }}
    {{- if or $v.chaingate.sharedCache.url $v.chaingate.sharedCache.clusterNodes }}
    - name: shared-cache-key
      mountPath: {{ printf "%s/shared-cache" $v.chaingate.secretsDir }}
      readOnly: true
    {{- end }}
{{- end }}
