package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/internal/compat"
)

func proxyEnv(t *testing.T, w *Workload, v Values, ns map[string]string) (map[string]string, error) {
	t.Helper()
	ops, err := Patch(w, v, Options{Mode: compat.InjectEnabled, NSAnnotations: ns})
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		if c, ok := op.Value.(corev1.Container); ok && c.Name == compat.ProxyContainerName {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			return env, nil
		}
	}
	t.Fatal("no proxy container in the patch")
	return nil, nil
}

func TestInboundPolicyEnv(t *testing.T) {
	httpProbe := func(port intstr.IntOrString, path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: port, Path: path}}}
	}
	workload := func(ann map[string]string) *Workload {
		w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
		w.PodMeta.Annotations = ann
		w.PodSpec.Containers = []corev1.Container{{Name: "app",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: httpProbe(intstr.FromString("http"), "/ready?full=1"),
			LivenessProbe:  httpProbe(intstr.FromInt32(8081), "/live"),
			StartupProbe:   &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
		}}
		return w
	}
	chartDeny := testValues()
	chartDeny.Proxy.DefaultInboundPolicy = "deny"
	chartDeny.ClusterNetworks = "198.18.0.0/16"
	tests := []struct {
		name       string
		values     Values
		pod, ns    map[string]string
		wantPolicy string
		wantReqID  string
	}{
		{"chart default", testValues(), nil, nil, "all-unauthenticated", ""},
		{"chart value", chartDeny, nil, nil, "deny", ""},
		{"namespace annotation over chart", chartDeny, nil, map[string]string{compat.AnnotationDefaultInboundPolicy: "cluster-authenticated"}, "cluster-authenticated", ""},
		{"workload annotation over namespace", chartDeny, map[string]string{compat.AnnotationDefaultInboundPolicy: "audit"},
			map[string]string{compat.AnnotationDefaultInboundPolicy: "deny"}, "audit", ""},
		{"require identity ports", testValues(), map[string]string{compat.AnnotationRequireIdentityPorts: "8080,9000-9001"}, nil, "all-unauthenticated", "8080,9000-9001"},
	}
	for _, tt := range tests {
		env, err := proxyEnv(t, workload(tt.pod), tt.values, tt.ns)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := env[compat.EnvInboundDefaultPolicy]; got != tt.wantPolicy {
			t.Errorf("%s: %s = %q, want %q", tt.name, compat.EnvInboundDefaultPolicy, got, tt.wantPolicy)
		}
		if got := env[compat.EnvInboundRequireID]; got != tt.wantReqID {
			t.Errorf("%s: %s = %q, want %q", tt.name, compat.EnvInboundRequireID, got, tt.wantReqID)
		}
		if got := env[compat.EnvPolicyClusterNetworks]; got != tt.values.ClusterNetworks {
			t.Errorf("%s: cluster networks %q, want the chart's %q", tt.name, got, tt.values.ClusterNetworks)
		}
		if got := env[compat.EnvPolicyWorkload]; got != "$(_pod_ns):$(_pod_name)" {
			t.Errorf("%s: workload %q", tt.name, got)
		}
		if got := env[compat.EnvInboundProbes]; got != "8080/ready,8081/live" {
			t.Errorf("%s: probes %q, want 8080/ready,8081/live", tt.name, got)
		}
	}
	for _, ann := range []map[string]string{{compat.AnnotationDefaultInboundPolicy: "allow-all"}, {compat.AnnotationRequireIdentityPorts: "http"}} {
		_, err := proxyEnv(t, workload(ann), testValues(), nil)
		for k := range ann {
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Errorf("%v: err %v, want one naming %s", ann, err, k)
			}
		}
	}
}
