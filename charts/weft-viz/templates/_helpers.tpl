{{- define "viz.version" -}}{{ .Values.linkerdVersion | default .Chart.AppVersion }}{{- end -}}
{{- define "viz.controllerImage" -}}{{ .Values.controllerImage }}:{{ .Values.controllerImageVersion | default (include "viz.version" .) }}{{- end -}}
{{- define "viz.labels" -}}
linkerd.io/extension: viz
app.kubernetes.io/part-of: weft
app.kubernetes.io/version: {{ include "viz.version" . }}
{{- end -}}
{{- define "viz.prometheusUrl" -}}
{{- if .Values.prometheus.enabled -}}
http://prometheus.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:9090
{{- else -}}
{{- required "prometheus.enabled is false: set prometheusUrl to the Prometheus that scrapes the proxies" .Values.prometheusUrl -}}
{{- end -}}
{{- end -}}
{{- define "viz.enforcedHostRegexp" -}}
{{- if .Values.dashboard.enforcedHostRegexp -}}
{{ .Values.dashboard.enforcedHostRegexp }}
{{- else -}}
^(localhost|127\.0\.0\.1|web\.{{ .Release.Namespace | replace "." "\\." }}\.svc\.{{ .Values.clusterDomain | replace "." "\\." }}|web\.{{ .Release.Namespace | replace "." "\\." }}\.svc|\[::1\])(:\d+)?$
{{- end -}}
{{- end -}}
{{- define "viz.securityContext" -}}
runAsUser: {{ .Values.controllerUID }}
runAsGroup: {{ .Values.controllerUID }}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}
{{- define "viz.resources" -}}
{{- $r := . -}}
{{- if or $r.cpu $r.memory }}
resources:
  {{- if or (and $r.cpu $r.cpu.request) (and $r.memory $r.memory.request) }}
  requests:
    {{- with $r.cpu }}{{ with .request }}
    cpu: {{ . | quote }}{{ end }}{{ end }}
    {{- with $r.memory }}{{ with .request }}
    memory: {{ . | quote }}{{ end }}{{ end }}
  {{- end }}
  {{- if or (and $r.cpu $r.cpu.limit) (and $r.memory $r.memory.limit) }}
  limits:
    {{- with $r.cpu }}{{ with .limit }}
    cpu: {{ . | quote }}{{ end }}{{ end }}
    {{- with $r.memory }}{{ with .limit }}
    memory: {{ . | quote }}{{ end }}{{ end }}
  {{- end }}
{{- end }}
{{- end -}}
{{- define "viz.probes" -}}
livenessProbe:
  httpGet: {path: /live, port: admin-http}
readinessProbe:
  httpGet: {path: /ready, port: admin-http}
  periodSeconds: 2
{{- end -}}
{{- define "viz.podDiscovery" -}}
{{- if eq .Values.prometheus.discovery "kubernetes" }}
kubernetes_sd_configs:
- role: pod
{{- else if eq .Values.prometheus.discovery "http" }}
http_sd_configs:
- url: http://metrics-api.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:8085/api/v1/prometheus-sd
  refresh_interval: 30s
{{- else }}
{{- fail (printf "prometheus.discovery %q: want kubernetes or http" .Values.prometheus.discovery) }}
{{- end }}
{{- end -}}
