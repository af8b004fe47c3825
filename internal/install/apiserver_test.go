package install

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/manifest"
)

// TestRenderedManifestsValidate sends every rendered object to a real API
// server with a server-side dry run, which checks it against the
// Kubernetes schemas (and the CRDs' own): the CRDs, the control plane with
// its defaults, and with the HA values.
func TestRenderedManifestsValidate(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	ctx := context.Background()
	if _, err := a.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "linkerd"}}, metav1.CreateOptions{}); err != nil {
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
	// The CRDs are created for real: the control plane's objects do not use
	// them, but a dry run cannot prove a CRD's schema is accepted.
	apply(t, dyn, mapper, crds, false)
	ha, err := ControlPlaneValues(Options{Version: "v1", ValuesFiles: []string{"../../charts/weft-control-plane/values-ha.yaml"}})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ControlPlaneValues(Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	for name, vals := range map[string]map[string]any{"defaults": plain, "HA": ha} {
		vals["installNamespace"] = false
		out, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { apply(t, dyn, mapper, out, true) })
	}
}

func apply(t *testing.T, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, stream string, dryRun bool) {
	t.Helper()
	docs, err := manifest.Read(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, d := range docs {
		j, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(j, &obj.Object); err != nil {
			t.Fatal(err)
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s %s: no such kind in the API: %v", gvk, obj.GetName(), err)
			continue
		}
		ri := dyn.Resource(m.Resource)
		var rerr error
		if m.Scope.Name() == "namespace" {
			_, rerr = ri.Namespace(obj.GetNamespace()).Create(context.Background(), &obj, opts)
		} else {
			_, rerr = ri.Create(context.Background(), &obj, opts)
		}
		if rerr != nil {
			t.Errorf("%s %s/%s rejected: %v", gvk.Kind, obj.GetNamespace(), obj.GetName(), rerr)
		}
	}
}
