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
	vals["jaeger"] = map[string]any{"enabled": true}
	if _, err := Render(JaegerChart, "linkerd-jaeger", "linkerd-jaeger", vals); err == nil || !strings.Contains(err.Error(), "jaeger.enabled") {
		t.Errorf("jaeger.enabled=true: err %v, want a refusal naming jaeger.enabled", err)
	}
}
