{{- define "jaeger.version" -}}{{ .Values.linkerdVersion | default .Chart.AppVersion }}{{- end -}}
{{- define "jaeger.controllerImage" -}}{{ .Values.controllerImage }}:{{ .Values.controllerImageVersion | default (include "jaeger.version" .) }}{{- end -}}
{{- define "jaeger.labels" -}}
linkerd.io/extension: jaeger
app.kubernetes.io/part-of: weft
app.kubernetes.io/version: {{ include "jaeger.version" . }}
{{- end -}}
