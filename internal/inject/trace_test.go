package inject

import (
	"encoding/json"
	"fmt"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"

	"github.com/google/go-cmp/cmp"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/proxy"
	"github.com/weftmesh/weft/internal/trace"
)

const tracedDeployment = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"},
"spec":{"template":{"metadata":{"labels":{"app":"web"},"annotations":{%s}},"spec":{"containers":[{"name":"app","image":"web:1"}]}}}}`

func apply(t *testing.T, raw []byte, ops any) []byte {
	t.Helper()
	b, _ := json.Marshal(ops)
	p, err := jsonpatch.DecodePatch(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", b, err)
	}
	return out
}

// injected runs the proxy injector, then the jaeger injector, and returns
// the proxy's configuration as weft-proxy reads it from the result.
func injected(t *testing.T, annotations string, tv TraceValues, ns map[string]string) (*Workload, proxy.Config) {
	t.Helper()
	raw := []byte(fmt.Sprintf(tracedDeployment, annotations))
	w, err := ParseWorkload(raw)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := Patch(w, testValues(), Options{CreatedBy: "weft/test", Mode: compat.InjectEnabled})
	if err != nil {
		t.Fatal(err)
	}
	raw = apply(t, raw, ops)
	if w, err = ParseWorkload(raw); err != nil {
		t.Fatal(err)
	}
	tops, err := TracePatch(w, tv, ns)
	if err != nil {
		t.Fatal(err)
	}
	raw = apply(t, raw, tops)
	if w, err = ParseWorkload(raw); err != nil {
		t.Fatal(err)
	}
	if again, err := TracePatch(w, tv, ns); err != nil || len(again) != 0 {
		t.Errorf("second jaeger injection: %v ops, err %v; want none", len(again), err)
	}
	env := map[string]string{}
	for _, c := range w.PodSpec.Containers {
		if c.Name == compat.ProxyContainerName {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					env[e.Name] = e.Value
				}
			}
		}
	}
	cfg := proxy.DefaultConfig()
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	return w, cfg
}

func TestTracePatchSeedValues(t *testing.T) {
	// The seeds: webhook.collectorSvcAddr tempo-distributor.tracing:55678,
	// webhook.collectorSvcAccount tempo, protocol opencensus.
	tv := DefaultTraceValues()
	tv.CollectorSvcAddr, tv.CollectorSvcAccount, tv.CollectorTraceProtocol = "tempo-distributor.tracing:55678", "tempo", trace.ProtocolOpenCensus
	w, cfg := injected(t, `"`+compat.AnnotationAccessLog+`":"json"`, tv, nil)
	want := trace.Config{CollectorAddr: "tempo-distributor.tracing:55678", CollectorName: "tempo.tracing.serviceaccount.identity.linkerd.cluster.local",
		AttributesPath: "/var/run/linkerd/podinfo/labels", ServiceName: compat.DefaultTraceServiceName, Protocol: trace.ProtocolOpenCensus}
	if d := cmp.Diff(want, cfg.Trace); d != "" {
		t.Errorf("proxy trace config (-want +got):\n%s", d)
	}
	if cfg.AccessLog != "json" {
		t.Errorf("access log = %q, want json (annotation)", cfg.AccessLog)
	}
	var vol *corev1.Volume
	for i := range w.PodSpec.Volumes {
		if w.PodSpec.Volumes[i].Name == compat.TraceAttributesVolume {
			vol = &w.PodSpec.Volumes[i]
		}
	}
	if vol == nil || vol.DownwardAPI == nil || len(vol.DownwardAPI.Items) != 1 || vol.DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.labels" || vol.DownwardAPI.Items[0].Path != "labels" {
		t.Fatalf("downward-API volume = %+v", vol)
	}
	mounted := false
	for _, c := range w.PodSpec.Containers {
		for _, m := range c.VolumeMounts {
			if c.Name == compat.ProxyContainerName && m.Name == compat.TraceAttributesVolume && m.MountPath == "/var/run/linkerd/podinfo" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Error("the proxy does not mount the attributes volume")
	}
}

func TestTracePatchAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name, annotations string
		ns                map[string]string
		wantAddr, wantID  string
	}{
		{"defaults", ``, nil, "collector.linkerd-jaeger:55678", "collector.linkerd-jaeger.serviceaccount.identity.linkerd.cluster.local"},
		{"pod annotations", `"config.linkerd.io/trace-collector":"otel.observability:4317","config.alpha.linkerd.io/trace-collector-service-account":"otel"`, nil,
			"otel.observability:4317", "otel.observability.serviceaccount.identity.linkerd.cluster.local"},
		{"namespace annotation", ``, map[string]string{compat.AnnotationTraceCollector: "jaeger.team:4317"},
			"jaeger.team:4317", "collector.team.serviceaccount.identity.linkerd.cluster.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg := injected(t, tc.annotations, DefaultTraceValues(), tc.ns)
			if cfg.Trace.CollectorAddr != tc.wantAddr || cfg.Trace.CollectorName != tc.wantID || cfg.Trace.Protocol != trace.ProtocolOpenTelemetry {
				t.Errorf("trace config %+v, want addr %s identity %s", cfg.Trace, tc.wantAddr, tc.wantID)
			}
		})
	}
}

func TestTracePatchRejectsBadInput(t *testing.T) {
	w, err := ParseWorkload([]byte(fmt.Sprintf(tracedDeployment, `"config.linkerd.io/trace-collector":"no-port"`)))
	if err != nil {
		t.Fatal(err)
	}
	w.PodSpec.Containers = append(w.PodSpec.Containers, corev1.Container{Name: compat.ProxyContainerName})
	if _, err := TracePatch(w, DefaultTraceValues(), nil); err == nil {
		t.Error("a collector without a port: no error")
	}
	tv := DefaultTraceValues()
	tv.CollectorTraceProtocol = "zipkin"
	w.PodMeta.Annotations = nil
	if _, err := TracePatch(w, tv, nil); err == nil {
		t.Error("protocol zipkin: no error")
	}
	w.PodSpec.Containers = w.PodSpec.Containers[:1]
	if ops, err := TracePatch(w, DefaultTraceValues(), nil); err != nil || ops != nil {
		t.Errorf("a pod without a proxy: %v, %v; want no patch", ops, err)
	}
	if _, err := Patch(w, testValues(), Options{Mode: compat.InjectEnabled, NSAnnotations: map[string]string{compat.AnnotationAccessLog: "xml"}}); err == nil {
		t.Error("access-log xml: no error")
	}
}

// TestAccessLogAlphaAnnotation: Linkerd documents the access log under
// config.alpha.linkerd.io; both names work, the stable one wins.
func TestAccessLogAlphaAnnotation(t *testing.T) {
	for _, tc := range []struct {
		ann, want string
	}{
		{`"` + compat.AnnotationAccessLogAlpha + `":"apache"`, "apache"},
		{`"` + compat.AnnotationAccessLogAlpha + `":"apache", "` + compat.AnnotationAccessLog + `":"json"`, "json"},
	} {
		_, cfg := injected(t, tc.ann, DefaultTraceValues(), nil)
		if cfg.AccessLog != tc.want {
			t.Errorf("%s: access log = %q, want %q", tc.ann, cfg.AccessLog, tc.want)
		}
	}
}
