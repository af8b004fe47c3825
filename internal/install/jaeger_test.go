package install

import (
	"strings"
	"testing"
)

// TestRenderJaegerChartSeedValues renders weft-jaeger with the seeds'
// values: only the injector, pointed at Tempo's OpenCensus receiver.
func TestRenderJaegerChartSeedValues(t *testing.T) {
	vals := map[string]any{"collector": map[string]any{"enabled": false}, "jaeger": map[string]any{"enabled": false},
		"webhook": map[string]any{"collectorSvcAddr": "tempo-distributor.tracing:55678", "collectorSvcAccount": "tempo", "collectorTraceProtocol": "opencensus"}}
	out, err := Render(JaegerChart, "linkerd-jaeger", "linkerd-jaeger", vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: MutatingWebhookConfiguration", "name: linkerd-jaeger-injector-webhook-config",
		"- --collector-svc-addr=tempo-distributor.tracing:55678", "- --collector-svc-account=tempo",
		"- --collector-trace-protocol=opencensus", "- jaeger-injector", "caBundle: "} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered chart lacks %q", want)
		}
	}
	if strings.Contains(out, "name: jaeger\n") || strings.Contains(out, "name: collector\n") {
		t.Errorf("the seeds' values (collector and jaeger disabled) rendered a Jaeger or a collector:\n%s", out)
	}
	vals["collector"] = map[string]any{"enabled": true}
	if _, err := Render(JaegerChart, "linkerd-jaeger", "linkerd-jaeger", vals); err == nil || !strings.Contains(err.Error(), "collector.enabled needs jaeger.enabled") {
		t.Errorf("collector.enabled without jaeger.enabled: err %v, want a refusal naming both", err)
	}
}

// TestRenderJaegerChartDefaults: linkerd-jaeger's defaults (collector and
// jaeger enabled) give Weft's Jaeger image, its config, the collector
// Service on linkerd-jaeger's port and the ServiceAccount the default
// webhook.collectorSvcAccount names; the seeds' shape pointing at the
// chart's own Jaeger runs it as ServiceAccount jaeger.
func TestRenderJaegerChartDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want []string
		not  []string
	}{
		{"defaults", map[string]any{"linkerdVersion": "v9"}, []string{
			"image: ghcr.io/weftmesh/weft-jaeger:v9", "kind: Deployment\nmetadata:\n  name: jaeger\n", "serviceAccountName: collector",
			"name: collector\n", "{name: opencensus, port: 55678, targetPort: 4317}", "args: [--config=/etc/jaeger/config.yaml]",
			"endpoint: 0.0.0.0:16686", "max_traces: 100000", "kubernetes.io/arch: amd64", "- --collector-svc-addr=collector.linkerd-jaeger:55678",
		}, nil},
		{"seeds' shape, own Jaeger", map[string]any{"collector": map[string]any{"enabled": false}, "jaeger": map[string]any{"maxTraces": 500},
			"webhook": map[string]any{"collectorSvcAddr": "jaeger.linkerd-jaeger:4317", "collectorSvcAccount": "jaeger"}},
			[]string{"serviceAccountName: jaeger", "max_traces: 500", "- --collector-svc-account=jaeger"},
			[]string{"name: collector\n"}},
	} {
		out, err := Render(JaegerChart, "linkerd-jaeger", "linkerd-jaeger", tc.vals)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(out, want) {
				t.Errorf("%s: rendered chart lacks %q", tc.name, want)
			}
		}
		for _, not := range tc.not {
			if strings.Contains(out, not) {
				t.Errorf("%s: rendered chart has %q", tc.name, not)
			}
		}
	}
}
