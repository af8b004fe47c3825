{{- define "weft.version" -}}{{ .Values.linkerdVersion | default .Chart.AppVersion }}{{- end -}}
{{- define "weft.controllerImage" -}}{{ .Values.controllerImage }}:{{ .Values.controllerImageVersion | default (include "weft.version" .) }}{{- end -}}
{{- define "weft.trustDomain" -}}{{ .Values.identityTrustDomain | default .Values.clusterDomain }}{{- end -}}
{{- define "weft.labels" -}}
linkerd.io/control-plane-ns: {{ .Release.Namespace }}
app.kubernetes.io/part-of: weft
app.kubernetes.io/version: {{ include "weft.version" . }}
{{- end -}}
{{- define "weft.securityContext" -}}
runAsUser: {{ .Values.controllerUID }}
runAsGroup: {{ .Values.controllerUID }}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}
{{- define "weft.probes" -}}
livenessProbe:
  httpGet: {path: /live, port: admin-http}
  initialDelaySeconds: 1
readinessProbe:
  httpGet: {path: /ready, port: admin-http}
  periodSeconds: 2
{{- end -}}
{{- define "weft.strategy" -}}
strategy:
  {{- toYaml .Values.deploymentStrategy | nindent 2 }}
{{- end -}}
{{- define "weft.affinity" -}}
{{- if .root.Values.enablePodAntiAffinity }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels: {linkerd.io/control-plane-component: {{ .component }}}
      topologyKey: kubernetes.io/hostname
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels: {linkerd.io/control-plane-component: {{ .component }}}
        topologyKey: topology.kubernetes.io/zone
{{- end }}
{{- end -}}
{{- define "weft.traceCollector" -}}
{{- required "controller.tracing.collector.endpoint must be set when controller.tracing.enabled is true" (((.Values.controller).tracing).collector).endpoint -}}
{{- end -}}
