package inject

import (
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/jsonpatch"
)

// TraceValues are the jaeger extension's injector settings (its chart's
// webhook.* values) and the mesh's identity coordinates.
type TraceValues struct {
	CollectorSvcAddr       string // webhook.collectorSvcAddr, host:port
	CollectorSvcAccount    string // webhook.collectorSvcAccount
	CollectorTraceProtocol string // webhook.collectorTraceProtocol: opentelemetry or opencensus
	CollectorTraceSvcName  string // webhook.collectorTraceSvcName: the spans' service name
	ControllerNamespace    string // the control plane's namespace (linkerd)
	IdentityTrustDomain    string
}

// DefaultTraceValues are linkerd-jaeger's defaults.
func DefaultTraceValues() TraceValues {
	return TraceValues{
		CollectorSvcAddr:       compat.DefaultTraceCollectorSvcAddr,
		CollectorSvcAccount:    compat.DefaultTraceCollectorSvcAccount,
		CollectorTraceProtocol: compat.TraceProtocolOpenTelemetry,
		CollectorTraceSvcName:  compat.DefaultTraceServiceName,
		ControllerNamespace:    compat.DefaultControlPlaneNamespace,
		IdentityTrustDomain:    compat.DefaultIdentityTrustDomain,
	}
}

// TracePatch returns the JSON patch that turns tracing on in w's injected
// proxy, as the jaeger extension's injector does: the trace variables on
// the proxy container and a downward-API volume with the pod's labels (the
// spans' attributes). The pod's (or else the namespace's)
// config.linkerd.io/trace-collector and
// config.alpha.linkerd.io/trace-collector-service-account override the
// collector and its ServiceAccount. A workload without a proxy, or whose
// proxy already has a collector, gets no patch.
func TracePatch(w *Workload, v TraceValues, nsAnnotations map[string]string) ([]jsonpatch.Op, error) {
	get := func(key, def string) string {
		if val, ok := w.PodMeta.Annotations[key]; ok && val != "" {
			return val
		}
		if val, ok := nsAnnotations[key]; ok && val != "" {
			return val
		}
		return def
	}
	list, idx := "containers", proxyIndex(w.PodSpec.Containers)
	if idx < 0 {
		list, idx = "initContainers", proxyIndex(w.PodSpec.InitContainers) // a native sidecar
	}
	if idx < 0 {
		return nil, nil
	}
	proxy := w.PodSpec.Containers
	if list == "initContainers" {
		proxy = w.PodSpec.InitContainers
	}
	pc := proxy[idx]
	for _, e := range pc.Env {
		if e.Name == compat.EnvTraceCollectorSvcAddr {
			return nil, nil
		}
	}
	addr := get(compat.AnnotationTraceCollector, v.CollectorSvcAddr)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%s=%q: want host:port: %v", compat.AnnotationTraceCollector, addr, err)
	}
	protocol := v.CollectorTraceProtocol
	if protocol != compat.TraceProtocolOpenTelemetry && protocol != compat.TraceProtocolOpenCensus {
		return nil, fmt.Errorf("trace protocol %q: want %s or %s", protocol, compat.TraceProtocolOpenTelemetry, compat.TraceProtocolOpenCensus)
	}
	// The collector's namespace is its Service's ("collector.linkerd-jaeger:55678").
	ns := w.Namespace
	if labels := strings.Split(host, "."); len(labels) > 1 && net.ParseIP(host) == nil {
		ns = labels[1]
	}
	env := []corev1.EnvVar{
		{Name: compat.EnvTraceAttributesPath, Value: compat.TraceAttributesMountPath + "/" + compat.TraceAttributesFile},
		{Name: compat.EnvTraceCollectorSvcAddr, Value: addr},
		{Name: compat.EnvTraceProtocol, Value: protocol},
		{Name: compat.EnvTraceServiceName, Value: v.CollectorTraceSvcName},
	}
	if sa := get(compat.AnnotationTraceCollectorSvcAccount, v.CollectorSvcAccount); sa != "" {
		env = append(env, corev1.EnvVar{Name: compat.EnvTraceCollectorSvcName,
			Value: fmt.Sprintf(compat.ServiceAccountIdentityFormat, sa, ns, v.ControllerNamespace, v.IdentityTrustDomain)})
	}
	p := fmt.Sprintf("%s/spec/%s/%d", w.prefix(), list, idx)
	var ops []jsonpatch.Op
	add := func(path string, value any) { ops = append(ops, jsonpatch.Op{Op: "add", Path: path, Value: value}) }
	if pc.Env == nil {
		add(p+"/env", []any{})
	}
	for _, e := range env {
		add(p+"/env/-", e)
	}
	if pc.VolumeMounts == nil {
		add(p+"/volumeMounts", []any{})
	}
	add(p+"/volumeMounts/-", corev1.VolumeMount{Name: compat.TraceAttributesVolume, MountPath: compat.TraceAttributesMountPath, ReadOnly: true})
	for _, vol := range w.PodSpec.Volumes {
		if vol.Name == compat.TraceAttributesVolume {
			return ops, nil
		}
	}
	if w.PodSpec.Volumes == nil {
		add(w.prefix()+"/spec/volumes", []any{})
	}
	add(w.prefix()+"/spec/volumes/-", corev1.Volume{Name: compat.TraceAttributesVolume, VolumeSource: corev1.VolumeSource{
		DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: compat.TraceAttributesFile, FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}}}})
	return ops, nil
}

func proxyIndex(cs []corev1.Container) int {
	for i, c := range cs {
		if c.Name == compat.ProxyContainerName {
			return i
		}
	}
	return -1
}
