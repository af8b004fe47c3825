package inject

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/golden"
)

// TestPreserveClientAddressPatch: Weft's client-address annotation, on the
// pod template or inherited from the namespace, gives the proxy its
// variable, NET_ADMIN and UID 0 in the proxy's group, and linkerd-init
// --proxy-gid and --preserve-client-address; without it (or "false" on
// the pod over the namespace's "true") nothing changes. The annotated
// Deployment's patch is a golden file.
func TestPreserveClientAddressPatch(t *testing.T) {
	const file = "deployment-client-address.yaml"
	tests := []struct {
		name   string
		podVal string // "" leaves the pod's annotation out
		nsVal  string
		want   bool
	}{
		{name: "pod true", podVal: "true", want: true},
		{name: "pod enabled", podVal: "enabled", want: true},
		{name: "namespace true", nsVal: "true", want: true},
		{name: "pod false over namespace true", podVal: "false", nsVal: "true", want: false},
		{name: "none", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := load(t, file)
			w, err := ParseWorkload(raw)
			if err != nil {
				t.Fatal(err)
			}
			delete(w.PodMeta.Annotations, compat.AnnotationPreserveClientAddress)
			if tt.podVal != "" {
				w.PodMeta.Annotations[compat.AnnotationPreserveClientAddress] = tt.podVal
			}
			ns := map[string]string{}
			if tt.nsVal != "" {
				ns[compat.AnnotationPreserveClientAddress] = tt.nsVal
			}
			ops, err := Patch(w, testValues(), Options{CreatedBy: "weft/test", NSAnnotations: ns, Mode: compat.InjectEnabled})
			if err != nil {
				t.Fatal(err)
			}
			patch, err := json.MarshalIndent(ops, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "pod true" {
				golden.Check(t, "deployment-client-address.patch.json", append(patch, '\n'))
			}
			// The patch applies to the resource as the user wrote it
			// (with the pod's annotation as in the test case).
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			ann := doc["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
			delete(ann, compat.AnnotationPreserveClientAddress)
			if tt.podVal != "" {
				ann[compat.AnnotationPreserveClientAddress] = tt.podVal
			}
			raw, _ = json.Marshal(doc)
			after, err := ParseWorkload(apply(t, raw, json.RawMessage(patch)))
			if err != nil {
				t.Fatal(err)
			}
			checkClientAddr(t, after, tt.want)
			if tt.nsVal != "" && tt.podVal == "" && after.PodMeta.Annotations[compat.AnnotationPreserveClientAddress] != tt.nsVal {
				t.Errorf("the namespace's annotation is not shown on the pod: %v", after.PodMeta.Annotations)
			}
		})
	}
}

func checkClientAddr(t *testing.T, w *Workload, want bool) {
	t.Helper()
	i := slices.IndexFunc(w.PodSpec.Containers, func(c corev1.Container) bool { return c.Name == compat.ProxyContainerName })
	if i < 0 {
		t.Fatal("no proxy container")
	}
	proxy := w.PodSpec.Containers[i]
	env := ""
	for _, e := range proxy.Env {
		if e.Name == compat.EnvPreserveClientAddress {
			env = e.Value
		}
	}
	sc := proxy.SecurityContext
	initArgs := strings.Join(w.PodSpec.InitContainers[0].Args, " ")
	type shape struct {
		Env            string
		User, Group    int64
		NonRoot        bool
		Add            []corev1.Capability
		InitPreserve   bool
		InitGroupRule  bool
		DropsEverthing bool
	}
	got := shape{Env: env, User: *sc.RunAsUser, Group: *sc.RunAsGroup, NonRoot: *sc.RunAsNonRoot, Add: sc.Capabilities.Add,
		InitPreserve:   strings.Contains(initArgs, "--preserve-client-address"),
		InitGroupRule:  strings.Contains(initArgs, "--proxy-gid 2102"),
		DropsEverthing: slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"})}
	wantShape := shape{User: compat.ProxyUID, Group: compat.ProxyUID, NonRoot: true, DropsEverthing: true}
	if want {
		wantShape = shape{Env: "true", User: 0, Group: compat.ProxyUID, NonRoot: false, Add: []corev1.Capability{"NET_ADMIN"},
			InitPreserve: true, InitGroupRule: true, DropsEverthing: true}
	}
	if g, _ := json.Marshal(got); string(g) != mustJSON(t, wantShape) {
		t.Errorf("got  %s\nwant %s\n(init args: %s)", g, mustJSON(t, wantShape), initArgs)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPreserveClientAddressBadValue: a value that is neither true nor
// false is an error naming the annotation, not a silent default.
func TestPreserveClientAddressBadValue(t *testing.T) {
	w, err := ParseWorkload(load(t, "deployment-client-address.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w.PodMeta.Annotations[compat.AnnotationPreserveClientAddress] = "yes please"
	_, err = Patch(w, testValues(), Options{CreatedBy: "weft/test", Mode: compat.InjectEnabled})
	if err == nil || !strings.Contains(err.Error(), compat.AnnotationPreserveClientAddress) {
		t.Fatalf("err = %v, want one naming %s", err, compat.AnnotationPreserveClientAddress)
	}
}
