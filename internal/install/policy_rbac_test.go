package install

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/manifest"
	"github.com/weftmesh/weft/internal/policy/outbound"
	outboundkube "github.com/weftmesh/weft/internal/policy/outbound/kube"
)

// TestPolicyRBACSuffices runs the policy controller's outbound index as the
// chart's linkerd-destination ServiceAccount (the policy container's), with
// only the chart's RBAC: its informers sync and it writes a route's status.
func TestPolicyRBACSuffices(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, ns := range []string{"linkerd", "shop"} {
		if _, err := a.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dyn, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(a.Client.Discovery()))
	crds, err := Render(CRDsChart, "weft-crds", "linkerd", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, dyn, mapper, crds, false)
	vals, err := ControlPlaneValues(Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	vals["installNamespace"] = false
	out, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var rbac []*manifest.Document
	for _, d := range docs {
		switch kind, name := d.String("/kind"), d.String("/metadata/name"); {
		case kind == "ServiceAccount" && name == "linkerd-destination",
			(kind == "ClusterRole" || kind == "ClusterRoleBinding") && name == "linkerd-linkerd-policy":
			rbac = append(rbac, d)
		}
	}
	if len(rbac) != 3 {
		t.Fatalf("found %d of the policy's ServiceAccount, ClusterRole and ClusterRoleBinding, want 3", len(rbac))
	}
	var stream strings.Builder
	if err := manifest.Write(&stream, rbac); err != nil {
		t.Fatal(err)
	}
	mapper.Reset()
	apply(t, dyn, mapper, stream.String(), false)
	mapper.Reset()
	if _, err := a.Client.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apply(t, dyn, mapper, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: shop}
spec:
  parentRefs: [{name: web, kind: Service, group: core, port: 80}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`, false)

	cfg := rest.CopyConfig(a.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:linkerd:linkerd-destination"}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sadyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ServiceAccount still may not list services: %v", err)
		}
	}
	ix := outbound.NewIndex("cluster.local", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ad, err := outboundkube.Start(ctx, client, sadyn, ix, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	for !ad.Ready() || ad.StatusWrites.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatalf("with the chart's RBAC: ready %v, status writes %d", ad.Ready(), ad.StatusWrites.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	u, err := dyn.Resource(gvr).Namespace("shop").Get(ctx, "split", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := outboundkube.Decode(gvr.Group, "HTTPRoute", u)
	if err != nil || len(r.Status) != 1 || r.Status[0].Conditions[0].Status != "True" {
		t.Fatalf("status = %+v (%v), want one accepted parent", r.Status, err)
	}
}
