package install

import (
	"strconv"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/manifest"
)

// TestControlPlaneTracingValue: controller.tracing.enabled with a
// collector endpoint gives the identity and destination containers
// --trace-collector; by default no container has it; enabled without an
// endpoint is refused.
func TestControlPlaneTracingValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string
		want string // the flag on identity and destination; "" for none
	}{
		{"default", nil, ""},
		{"enabled", []string{"controller.tracing.enabled=true", "controller.tracing.collector.endpoint=collector.linkerd-jaeger:4317"},
			"--trace-collector=collector.linkerd-jaeger:4317"},
		{"endpoint only", []string{"controller.tracing.collector.endpoint=collector.linkerd-jaeger:4317"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := ControlPlaneValues(Options{Version: "v1", Sets: tc.sets})
			if err != nil {
				t.Fatal(err)
			}
			out, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" && strings.Contains(out, "--trace-collector") {
				t.Errorf("--set %v rendered --trace-collector", tc.sets)
			}
			docs, err := manifest.Read(strings.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, d := range docs {
				if d.String("/kind") != "Deployment" {
					continue
				}
				name := d.String("/metadata/name")
				for i := 0; d.String("/spec/template/spec/containers/0/args/"+strconv.Itoa(i)) != ""; i++ {
					if a := d.String("/spec/template/spec/containers/0/args/" + strconv.Itoa(i)); strings.HasPrefix(a, "--trace-collector") {
						got[name] = a
					}
				}
			}
			for _, dep := range []string{compat.IdentityComponent, compat.DestinationComponent} {
				if got[dep] != tc.want {
					t.Errorf("--set %v: %s has %q, want %q", tc.sets, dep, got[dep], tc.want)
				}
			}
		})
	}
	vals, err := ControlPlaneValues(Options{Version: "v1", Sets: []string{"controller.tracing.enabled=true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals); err == nil || !strings.Contains(err.Error(), "controller.tracing.collector.endpoint") {
		t.Errorf("controller.tracing.enabled without an endpoint: %v, want an error naming controller.tracing.collector.endpoint", err)
	}
}
