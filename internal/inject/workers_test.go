package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/proxy"
)

// coresEnv injects a pod with annotations under values v and returns the
// proxy container's LINKERD2_PROXY_CORES* variables.
func coresEnv(t *testing.T, v Values, annotations map[string]string) map[string]string {
	t.Helper()
	w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
	w.PodMeta.Annotations = annotations
	w.PodSpec.Containers = []corev1.Container{{Name: "app"}}
	ops, err := Patch(w, v, Options{Mode: compat.InjectEnabled})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if c, ok := op.Value.(corev1.Container); ok && c.Name == compat.ProxyContainerName {
			env := map[string]string{}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, compat.EnvProxyCores) {
					env[e.Name] = e.Value
				}
			}
			return env
		}
	}
	t.Fatal("no proxy container in the patch")
	return nil
}

// TestWorkersEnv: what the injector writes, as Linkerd's chart and
// injector write it (but proxy.cores is a maximum too), and the cores a
// proxy reading it uses on an 8-CPU node.
func TestWorkersEnv(t *testing.T) {
	values := func(edit func(*Values)) Values {
		v := testValues()
		edit(&v)
		return v
	}
	for _, tt := range []struct {
		name        string
		v           Values
		annotations map[string]string
		want        string // the variables, sorted
		cores       int
	}{
		{"defaults: two cores", testValues(), nil,
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MIN=1", 2},
		{"runtime.workers.minimum", values(func(v *Values) { v.Proxy.Runtime.Workers.Minimum = 3 }), nil,
			"LINKERD2_PROXY_CORES=3 LINKERD2_PROXY_CORES_MIN=3", 3},
		{"runtime.workers.maximum", values(func(v *Values) { v.Proxy.Runtime.Workers.Maximum = 4 }), nil,
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX=4 LINKERD2_PROXY_CORES_MIN=1", 4},
		{"runtime.workers.maximumCPURatio", values(func(v *Values) { v.Proxy.Runtime.Workers.MaximumCPURatio = 0.5 }), nil,
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX_RATIO=0.5 LINKERD2_PROXY_CORES_MIN=1", 4},
		{"deprecated proxy.cores: exactly", values(func(v *Values) { v.Proxy.Cores = 1; v.Proxy.Runtime.Workers.Maximum = 6 }),
			map[string]string{compat.AnnotationProxyCPULimit: "5"},
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX=1 LINKERD2_PROXY_CORES_MIN=1", 1},
		{"CPU request: the minimum, rounded up", testValues(), map[string]string{compat.AnnotationProxyCPURequest: "2500m"},
			"LINKERD2_PROXY_CORES=3 LINKERD2_PROXY_CORES_MIN=3", 3},
		{"a request below the minimum leaves it", values(func(v *Values) { v.Proxy.Runtime.Workers.Minimum = 3 }),
			map[string]string{compat.AnnotationProxyCPURequest: "500m"},
			"LINKERD2_PROXY_CORES=3 LINKERD2_PROXY_CORES_MIN=3", 3},
		{"CPU limit: the maximum, rounded up", testValues(), map[string]string{compat.AnnotationProxyCPULimit: "2500m"},
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX=3 LINKERD2_PROXY_CORES_MIN=1", 3},
		{"a limit from the values", values(func(v *Values) { v.Proxy.Resources.CPU.Limit = "1" }), nil,
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX=1 LINKERD2_PROXY_CORES_MIN=1", 1},
		{"small request and limit", testValues(), map[string]string{compat.AnnotationProxyCPURequest: "50m", compat.AnnotationProxyCPULimit: "200m"},
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX=1 LINKERD2_PROXY_CORES_MIN=1", 1},
		{"ratio annotation", testValues(), map[string]string{compat.AnnotationProxyCPURatioLimit: "0.75"},
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX_RATIO=0.75 LINKERD2_PROXY_CORES_MIN=1", 6},
		{"limit wins over ratio", testValues(), map[string]string{compat.AnnotationProxyCPURatioLimit: "1", compat.AnnotationProxyCPULimit: "1"},
			"LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_CORES_MAX=1 LINKERD2_PROXY_CORES_MAX_RATIO=1 LINKERD2_PROXY_CORES_MIN=1", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := coresEnv(t, tt.v, tt.annotations)
			var got []string
			for _, name := range []string{compat.EnvProxyCores, compat.EnvProxyCoresMax, compat.EnvProxyCoresMaxRatio, compat.EnvProxyCoresMin} {
				if val, ok := env[name]; ok {
					got = append(got, name+"="+val)
				}
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("got %s, want %s", g, tt.want)
			}
			c := proxy.DefaultConfig()
			if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
				t.Fatalf("the proxy rejects the injected variables: %v", err)
			}
			if got := c.Workers.Cores(8); got != tt.cores {
				t.Errorf("the proxy uses %d of 8 cores, want %d", got, tt.cores)
			}
		})
	}
}

func TestWorkersBadRatio(t *testing.T) {
	for _, val := range []string{"0", "1.5", "-0.1", "half"} {
		w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
		w.PodMeta.Annotations = map[string]string{compat.AnnotationProxyCPURatioLimit: val}
		_, err := Patch(w, testValues(), Options{Mode: compat.InjectEnabled})
		if err == nil || !strings.Contains(err.Error(), compat.AnnotationProxyCPURatioLimit) {
			t.Errorf("%s=%q: error %v, want one naming the annotation", compat.AnnotationProxyCPURatioLimit, val, err)
		}
	}
	v := testValues()
	v.Proxy.Runtime.Workers.MaximumCPURatio = 2
	w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
	if _, err := Patch(w, v, Options{Mode: compat.InjectEnabled}); err == nil || !strings.Contains(err.Error(), "maximumCPURatio") {
		t.Errorf("maximumCPURatio 2: error %v, want one naming it", err)
	}
}

func TestBuildValuesChecksWorkers(t *testing.T) {
	for _, y := range []string{
		"proxy: {runtime: {workers: {maximumCPURatio: 1.5}}}",
		"proxy: {runtime: {workers: {minimum: -1}}}",
		"proxy: {cores: -2}",
	} {
		if _, err := BuildValues([]byte(y), "anchors", "linkerd"); err == nil || !strings.Contains(err.Error(), "proxy.") {
			t.Errorf("%s: error %v, want one naming the value", y, err)
		}
	}
	v, err := BuildValues([]byte("proxy: {cores: null, runtime: {workers: {maximumCPURatio: 0.5}}}"), "anchors", "linkerd")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v.Proxy.Runtime.Workers, (Workers{Minimum: 1, MaximumCPURatio: 0.5}); got != want {
		t.Errorf("workers %+v, want %+v (the default minimum kept)", got, want)
	}
}
