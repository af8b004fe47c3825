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
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	dstkube "github.com/weftmesh/weft/internal/destination/kube"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/manifest"
)

// TestDestinationRBACSuffices runs the destination's Kubernetes backend as
// the chart's linkerd-destination ServiceAccount, with only the chart's
// RBAC: every informer it starts (Services, EndpointSlices, Pods,
// Namespaces, Nodes, ServiceProfiles) must sync.
func TestDestinationRBACSuffices(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := a.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "linkerd"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a",
		Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
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
	apply(t, dyn, mapper, crds, false) // ServiceProfiles served: their informer runs too
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
			(kind == "ClusterRole" || kind == "ClusterRoleBinding") && name == "linkerd-linkerd-destination":
			rbac = append(rbac, d)
		}
	}
	if len(rbac) != 3 {
		t.Fatalf("found %d of the destination's ServiceAccount, ClusterRole and ClusterRoleBinding, want 3", len(rbac))
	}
	var stream strings.Builder
	if err := manifest.Write(&stream, rbac); err != nil {
		t.Fatal(err)
	}
	apply(t, dyn, mapper, stream.String(), false)
	mapper.Reset() // the CRDs are served now

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
	// The binding takes a moment to apply: wait (bounded) until a
	// permission the role has always had works.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ServiceAccount still may not list namespaces: %v", err)
		}
	}
	// Informers that may not list never sync: the deadline ends the wait.
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	defer syncCancel()
	b, err := dstkube.NewFromClient(client, sadyn, dstkube.Config{ClusterDomain: "cluster.local", ControlPlaneNS: "linkerd", TrustDomain: "cluster.local"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), syncCtx.Done())
	if err != nil {
		t.Fatalf("the backend, with the chart's RBAC: %v", err)
	}
	if got, want := b.ZoneOf("node-a"), "zone-a"; got != want {
		t.Errorf("ZoneOf(node-a) = %q, want %q", got, want)
	}
}
