package inject

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/golden"
)

func testValues() Values {
	v := DefaultValues()
	v.Version = "v0.1.0"
	v.IdentityTrustAnchorsPEM = "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n"
	return v
}

func load(t *testing.T, name string) []byte {
	t.Helper()
	y, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestPatchGolden injects each testdata workload, checks the patch against
// its golden file, applies it, and checks the result is a valid pod with
// the proxy where it belongs.
func TestPatchGolden(t *testing.T) {
	tests := []struct {
		file          string
		nsAnnotations map[string]string
		native        bool
		proxyFirst    bool
		ingress       bool
		opaque        string
	}{
		{file: "deployment.yaml", proxyFirst: true, opaque: "6379"},
		{file: "pod-bare.yaml", nsAnnotations: map[string]string{compat.AnnotationInject: "enabled", compat.AnnotationProxyLogLevel: "debug"}, proxyFirst: true},
		{file: "cronjob-native.yaml", native: true},
		{file: "statefulset-ingress.yaml", ingress: true, opaque: "5432"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw := load(t, tt.file)
			w, err := ParseWorkload(raw)
			if err != nil {
				t.Fatal(err)
			}
			r := Decide(w, tt.nsAnnotations, false)
			if !r.Injectable {
				t.Fatalf("not injectable: %v", r.Reasons)
			}
			ops, err := Patch(w, testValues(), Options{CreatedBy: "weft/test", NSAnnotations: tt.nsAnnotations, Mode: r.Mode})
			if err != nil {
				t.Fatal(err)
			}
			patch, err := json.MarshalIndent(ops, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(tt.file, ".yaml")+".patch.json", append(patch, '\n'))

			after, err := ParseWorkload(apply(t, raw, json.RawMessage(patch)))
			if err != nil {
				t.Fatal(err)
			}
			checkInjected(t, after, tt.native, tt.proxyFirst, tt.ingress, tt.opaque)
			if again := Decide(after, tt.nsAnnotations, false); again.Injectable || !slices.Contains(again.Reasons, ReasonSidecarExists) {
				t.Errorf("injected twice? second decision %+v", again)
			}
		})
	}
}

func checkInjected(t *testing.T, w *Workload, native, proxyFirst, ingress bool, opaque string) {
	t.Helper()
	spec := w.PodSpec
	if spec.InitContainers[0].Name != compat.InitContainerName {
		t.Errorf("first init container %q, want linkerd-init", spec.InitContainers[0].Name)
	}
	var proxy *corev1.Container
	switch {
	case native:
		proxy = &spec.InitContainers[1]
		if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways || proxy.StartupProbe == nil {
			t.Errorf("native sidecar without restartPolicy Always and a startup probe: %+v", proxy)
		}
	case proxyFirst:
		proxy = &spec.Containers[0]
		if proxy.Lifecycle == nil || proxy.Lifecycle.PostStart == nil {
			t.Error("proxy first without an await postStart hook")
		}
	default:
		proxy = &spec.Containers[len(spec.Containers)-1]
	}
	if proxy.Name != compat.ProxyContainerName {
		t.Fatalf("proxy container at the expected place is %q", proxy.Name)
	}
	if *proxy.SecurityContext.RunAsUser != compat.ProxyUID {
		t.Errorf("proxy runs as %d", *proxy.SecurityContext.RunAsUser)
	}
	env := map[string]string{}
	for _, e := range proxy.Env {
		env[e.Name] = e.Value
	}
	if (env[compat.EnvIngressMode] == "true") != ingress {
		t.Errorf("ingress mode env %q, want %v", env[compat.EnvIngressMode], ingress)
	}
	if env[compat.EnvOpaquePorts] != opaque {
		t.Errorf("opaque ports %q, want %q", env[compat.EnvOpaquePorts], opaque)
	}
	if env[compat.EnvTrustAnchors] == "" || env[compat.EnvIdentityTokenFile] != compat.IdentityTokenFile {
		t.Error("identity environment incomplete")
	}
	if w.PodMeta.Labels[compat.LabelControlPlaneNS] != "linkerd" || w.PodMeta.Annotations[compat.AnnotationTrustRootSHA256] == "" {
		t.Errorf("labels %v, annotations %v", w.PodMeta.Labels, w.PodMeta.Annotations)
	}
	var token bool
	for _, v := range spec.Volumes {
		if v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken.Audience == compat.AudienceIdentity {
			token = true
		}
	}
	if !token {
		t.Error("no projected token volume with audience identity.l5d.io")
	}
}

func TestDecide(t *testing.T) {
	no := false
	base := func(mut func(*Workload)) *Workload {
		w := &Workload{Kind: "Deployment", Name: "web", Namespace: "shop"}
		w.PodMeta.Annotations = map[string]string{compat.AnnotationInject: "enabled"}
		w.PodSpec.Containers = []corev1.Container{{Name: "web"}}
		if mut != nil {
			mut(w)
		}
		return w
	}
	tests := []struct {
		name  string
		w     *Workload
		ns    map[string]string
		force bool
		want  []string
		mode  string
	}{
		{"enabled on the pod", base(nil), nil, false, nil, "enabled"},
		{"enabled on the namespace", base(func(w *Workload) { w.PodMeta.Annotations = nil }), map[string]string{compat.AnnotationInject: "enabled"}, false, nil, "enabled"},
		{"pod disabled wins over namespace", base(func(w *Workload) { w.PodMeta.Annotations[compat.AnnotationInject] = "disabled" }), map[string]string{compat.AnnotationInject: "enabled"}, false, []string{ReasonPodDisabled}, "disabled"},
		{"pod enabled wins over namespace disabled", base(nil), map[string]string{compat.AnnotationInject: "disabled"}, false, nil, "enabled"},
		{"namespace disabled", base(func(w *Workload) { w.PodMeta.Annotations = nil }), map[string]string{compat.AnnotationInject: "disabled"}, false, []string{ReasonNamespaceDisabled}, "disabled"},
		{"no annotation", base(func(w *Workload) { w.PodMeta.Annotations = nil }), nil, false, []string{ReasonNotEnabled}, ""},
		{"no annotation, forced", base(func(w *Workload) { w.PodMeta.Annotations = nil }), nil, true, nil, "enabled"},
		{"ingress", base(func(w *Workload) { w.PodMeta.Annotations[compat.AnnotationInject] = "ingress" }), nil, false, nil, "ingress"},
		{"host network", base(func(w *Workload) { w.PodSpec.HostNetwork = true }), nil, false, []string{ReasonHostNetwork}, "enabled"},
		{"sidecar exists", base(func(w *Workload) {
			w.PodSpec.Containers = append(w.PodSpec.Containers, corev1.Container{Name: "linkerd-proxy"})
		}), nil, false, []string{ReasonSidecarExists}, "enabled"},
		{"automount off", base(func(w *Workload) { w.PodSpec.AutomountServiceAccountToken = &no }), nil, false, []string{ReasonAutomountDisabled}, "enabled"},
		{"unsupported", base(func(w *Workload) { w.Kind = "Service" }), nil, false, []string{ReasonUnsupportedResource}, "enabled"},
		{"several reasons", base(func(w *Workload) { w.PodSpec.HostNetwork = true; w.PodSpec.AutomountServiceAccountToken = &no }), nil, false,
			[]string{ReasonHostNetwork, ReasonAutomountDisabled}, "enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.w, tt.ns, tt.force)
			if !slices.Equal(got.Reasons, tt.want) || got.Injectable != (len(tt.want) == 0) || got.Mode != tt.mode {
				t.Errorf("Decide = %+v, want reasons %q, mode %q", got, tt.want, tt.mode)
			}
		})
	}
}

func TestBadAnnotationsAreNamed(t *testing.T) {
	w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
	w.PodMeta.Annotations = map[string]string{
		compat.AnnotationSkipInboundPorts:    "80,http",
		compat.AnnotationProxyCPULimit:       "lots",
		compat.AnnotationShutdownGracePeriod: "soon",
	}
	_, err := Patch(w, testValues(), Options{Mode: "enabled"})
	if err == nil {
		t.Fatal("no error for bad annotations")
	}
	for _, want := range []string{compat.AnnotationSkipInboundPorts, compat.AnnotationProxyCPULimit, compat.AnnotationShutdownGracePeriod} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestFilterPorts(t *testing.T) {
	declared := map[int32]bool{25: true, 3306: true, 8080: true, 4001: true}
	tests := []struct{ list, want string }{
		{"25,587,3306", "25,3306"},
		{"4000-4002", "4001"},
		{"", ""},
		{"9999", ""},
	}
	for _, tt := range tests {
		got, err := filterPorts(tt.list, declared)
		if err != nil || got != tt.want {
			t.Errorf("filterPorts(%q) = %q, %v; want %q", tt.list, got, err, tt.want)
		}
	}
	if _, err := filterPorts("25,x", declared); err == nil {
		t.Error("no error for a bad port")
	}
}

// TestDefaultContainer: the injector names the first app container for
// kubectl, unless the pod names one already.
func TestDefaultContainer(t *testing.T) {
	tests := []struct {
		name       string
		containers []string
		initC      []string
		have       map[string]string
		want       string // "" : no op on the annotation
	}{
		{name: "first app container", containers: []string{"web", "sidecar"}, initC: []string{"setup"}, want: "web"},
		{name: "already set, kept", containers: []string{"web", "sidecar"}, have: map[string]string{compat.AnnotationDefaultContainer: "sidecar"}},
		{name: "set empty, kept", containers: []string{"web"}, have: map[string]string{compat.AnnotationDefaultContainer: ""}},
		{name: "other annotations only", containers: []string{"app"}, have: map[string]string{"team": "a"}, want: "app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
			w.PodMeta.Annotations = tt.have
			for _, n := range tt.containers {
				w.PodSpec.Containers = append(w.PodSpec.Containers, corev1.Container{Name: n})
			}
			for _, n := range tt.initC {
				w.PodSpec.InitContainers = append(w.PodSpec.InitContainers, corev1.Container{Name: n})
			}
			ops, err := Patch(w, testValues(), Options{Mode: compat.InjectEnabled})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, op := range ops {
				switch {
				case op.Path == "/metadata/annotations/kubectl.kubernetes.io~1default-container":
					got = op.Value.(string)
				case op.Path == "/metadata/annotations":
					got = op.Value.(map[string]string)[compat.AnnotationDefaultContainer]
				}
			}
			if got != tt.want {
				t.Errorf("default-container = %q, want %q", got, tt.want)
			}
		})
	}
	if got := FirstAppContainer([]corev1.Container{{Name: compat.ProxyContainerName}, {Name: "app"}}); got != "app" {
		t.Errorf("FirstAppContainer skips the proxy: got %q", got)
	}
}

// TestEnvReferences: every $(VAR) in the proxy's environment names a
// variable defined before it (the kubelet expands only those), and the
// destination context expands to Linkerd's JSON shape.
func TestEnvReferences(t *testing.T) {
	w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
	w.PodSpec.Containers = []corev1.Container{{Name: "app"}}
	ops, err := Patch(w, testValues(), Options{Mode: compat.InjectEnabled})
	if err != nil {
		t.Fatal(err)
	}
	var proxy *corev1.Container
	for _, op := range ops {
		if c, ok := op.Value.(corev1.Container); ok && c.Name == compat.ProxyContainerName {
			proxy = &c
		}
	}
	if proxy == nil {
		t.Fatal("no proxy container in the patch")
	}
	// What the kubelet would give the variables: fieldRefs resolved.
	fields := map[string]string{"metadata.name": "p-1", "metadata.namespace": "shop", "spec.nodeName": "node-a", "spec.serviceAccountName": "web"}
	defined := map[string]string{}
	for _, e := range proxy.Env {
		val := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			val = fields[e.ValueFrom.FieldRef.FieldPath]
		}
		for rest := val; strings.Contains(rest, "$("); {
			start := strings.Index(rest, "$(")
			end := strings.Index(rest[start:], ")")
			if end < 0 {
				t.Fatalf("%s: unterminated reference in %q", e.Name, e.Value)
			}
			ref := rest[start+2 : start+end]
			got, ok := defined[ref]
			if !ok {
				t.Errorf("%s references $(%s), not defined before it", e.Name, ref)
			}
			val = strings.Replace(val, "$("+ref+")", got, 1)
			rest = rest[start+end:]
		}
		defined[e.Name] = val
	}
	var ctx map[string]string
	if err := json.Unmarshal([]byte(defined[compat.EnvDestinationContext]), &ctx); err != nil {
		t.Fatalf("%s = %q: %v", compat.EnvDestinationContext, defined[compat.EnvDestinationContext], err)
	}
	if want := map[string]string{"ns": "shop", "nodeName": "node-a", "pod": "p-1"}; fmt.Sprint(ctx) != fmt.Sprint(want) {
		t.Errorf("destination context %v, want %v", ctx, want)
	}
}

// TestIPv6: with disableIPv6 false the proxy listens on both families (the
// _ADDRS variables, which win over the single-address ones) and
// linkerd-init writes ip6tables rules too; with true (the default, as
// Linkerd's) IPv4 only and linkerd-init is told --ipv6=false.
func TestIPv6(t *testing.T) {
	tests := []struct {
		name          string
		disable       bool
		wantInbound   string
		wantOutbound  string
		wantInitFlags bool
	}{
		{name: "dual stack", disable: false, wantInbound: "0.0.0.0:4143,[::]:4143", wantOutbound: "127.0.0.1:4140,[::1]:4140"},
		{name: "IPv6 disabled", disable: true, wantInitFlags: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := testValues()
			v.DisableIPv6 = tt.disable
			w := &Workload{Kind: "Pod", Name: "p", Namespace: "shop"}
			w.PodSpec.Containers = []corev1.Container{{Name: "app"}}
			ops, err := Patch(w, v, Options{Mode: compat.InjectEnabled})
			if err != nil {
				t.Fatal(err)
			}
			env, args := map[string]string{}, []string(nil)
			for _, op := range ops {
				c, ok := op.Value.(corev1.Container)
				switch {
				case ok && c.Name == compat.ProxyContainerName:
					for _, e := range c.Env {
						env[e.Name] = e.Value
					}
				case ok && c.Name == compat.InitContainerName:
					args = c.Args
				}
			}
			if got := env[compat.EnvInboundListenAddrs]; got != tt.wantInbound {
				t.Errorf("%s = %q, want %q", compat.EnvInboundListenAddrs, got, tt.wantInbound)
			}
			if got := env[compat.EnvOutboundListenAddrs]; got != tt.wantOutbound {
				t.Errorf("%s = %q, want %q", compat.EnvOutboundListenAddrs, got, tt.wantOutbound)
			}
			// The single-address variables stay IPv4 either way.
			if env[compat.EnvInboundListenAddr] != compat.DefaultInboundAddr || env[compat.EnvOutboundListenAddr] != compat.DefaultOutboundAddr {
				t.Errorf("single-address listeners %q, %q", env[compat.EnvInboundListenAddr], env[compat.EnvOutboundListenAddr])
			}
			if got := slices.Contains(args, "--ipv6=false"); got != tt.wantInitFlags {
				t.Errorf("linkerd-init args %q: --ipv6=false present %v, want %v", args, got, tt.wantInitFlags)
			}
		})
	}
	if !DefaultValues().DisableIPv6 {
		t.Error("DefaultValues().DisableIPv6 is false; the chart's default (Linkerd's) is true")
	}
}
