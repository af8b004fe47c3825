package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/golden"
	"github.com/weftmesh/weft/internal/manifest"
)

// run executes the weft CLI in-process.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := NewRoot(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestInjectGolden(t *testing.T) {
	tests := []struct {
		golden string
		args   []string
	}{
		{"kinds.inject.yaml", []string{"inject", "testdata/kinds.yaml"}},
		{"kinds.inject-flags.yaml", []string{"inject", "--ingress", "--skip-outbound-ports", "3306", "--skip-inbound-ports", "9090",
			"--opaque-ports", "4000-4100", "--native-sidecar", "testdata/kinds.yaml"}},
		{"kinds.inject-manual.yaml", []string{"inject", "--manual", "--trust-anchors-file", "testdata/anchors.pem", "testdata/kinds.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			out, report, err := run(t, "", tt.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, report)
			}
			golden.Check(t, tt.golden, []byte(out))
			// 1 namespace annotated, 8 workloads injected (the List's too).
			if n := strings.Count(report, " injected\n"); n != 8 || !strings.Contains(report, `namespace "shop" annotated`) {
				t.Errorf("report:\n%s", report)
			}
		})
	}
}

// TestUninjectRestores: uninject after inject --manual gives back the
// original resources, field for field.
func TestUninjectRestores(t *testing.T) {
	injected, _, err := run(t, "", "inject", "--manual", "--trust-anchors-file", "testdata/anchors.pem", "testdata/kinds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	restored, report, err := run(t, injected, "uninject", "-")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(report, " uninjected\n"); n != 9 {
		t.Errorf("%d resources uninjected, want 9 (8 workloads and the namespace):\n%s", n, report)
	}
	original, err := os.ReadFile("testdata/kinds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The default opaque ports the pod declares stay annotated: uninject
	// cannot tell them from a user's own annotation.
	restored = strings.ReplaceAll(restored, "      annotations:\n        config.linkerd.io/opaque-ports: \"3306\"\n", "")
	got, want := asJSON(t, restored), asJSON(t, string(original))
	if len(got) != len(want) {
		t.Fatalf("%d documents, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("document %d:\n got %s\nwant %s", i+1, got[i], want[i])
		}
	}
}

func asJSON(t *testing.T, stream string) []string {
	t.Helper()
	docs, err := manifest.Read(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range docs {
		j, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		json.Unmarshal(j, &v)
		b, _ := yaml.Marshal(v) // sorted keys: compares content, not order
		out = append(out, string(b))
	}
	return out
}

func TestInjectRefusalFailsButReportsTheRest(t *testing.T) {
	out, report, err := run(t, "", "inject", "testdata/hostnetwork.yaml")
	if err == nil {
		t.Fatal("no error for a hostNetwork DaemonSet")
	}
	if !strings.Contains(report, "failed to inject daemonset/node-exporter: hostNetwork is enabled") {
		t.Errorf("report:\n%s", report)
	}
	if !strings.Contains(report, `deployment "ok" injected`) || strings.Count(out, "linkerd.io/inject: enabled") != 1 {
		t.Errorf("the other resource was not injected; report:\n%s\noutput:\n%s", report, out)
	}
}

func TestInjectBadInput(t *testing.T) {
	for _, tt := range []struct{ stdin, want string }{
		{"kind: [", "YAML document 1"},
		{"- a\n- b\n", "not a mapping"},
	} {
		_, _, err := run(t, tt.stdin, "inject", "-")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("stdin %q: error %v, want one naming %q", tt.stdin, err, tt.want)
		}
	}
	if _, _, err := run(t, "", "inject", "testdata/missing.yaml"); err == nil {
		t.Error("no error for a missing file")
	}
	if _, _, err := run(t, "", "inject", "--manual", "testdata/kinds.yaml"); err == nil || !strings.Contains(err.Error(), "trust anchors") {
		t.Errorf("--manual without anchors: %v", err)
	}
}

// TestUninjectDefaultContainer: uninject removes
// kubectl.kubernetes.io/default-container only when it names the first app
// container (what inject writes).
func TestUninjectDefaultContainer(t *testing.T) {
	const pod = `apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    kubectl.kubernetes.io/default-container: %s
    linkerd.io/inject: enabled
spec:
  containers:
  - {name: linkerd-proxy, image: proxy}
  - {name: app, image: app}
  - {name: helper, image: helper}
`
	tests := []struct {
		value string
		kept  bool
	}{
		{"app", false},   // what inject wrote
		{"helper", true}, // the user's own choice
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			out, _, err := run(t, fmt.Sprintf(pod, tt.value), "uninject", "-")
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(out, "kubectl.kubernetes.io/default-container: "+tt.value)
			if got != tt.kept {
				t.Errorf("annotation kept = %v, want %v; output:\n%s", got, tt.kept, out)
			}
			if strings.Contains(out, "linkerd-proxy") {
				t.Errorf("proxy left:\n%s", out)
			}
		})
	}
}
