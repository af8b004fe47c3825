// Package crds installs Weft's CustomResourceDefinitions (the weft-crds
// chart, rendered as helm would) into a test's API server and waits until
// the API server serves every one of them. It is for tests; it lives apart
// from package kubetest because the install package's own tests use
// kubetest.
package crds

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/manifest"
)

// GVR is the CustomResourceDefinition resource.
var GVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Install creates every CRD of weft-crds rendered with values (nil: the
// defaults) and waits, up to 30 s, until each is Established and its
// resource is in the API server's discovery (what informers and dynamic
// clients look up). It returns the CRDs' names.
func Install(t testing.TB, cfg *rest.Config, values map[string]any) []string {
	t.Helper()
	if values == nil {
		values = map[string]any{}
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := install.Render(install.CRDsChart, "weft-crds", compat.DefaultControlPlaneNamespace, values)
	if err != nil {
		t.Fatalf("rendering weft-crds: %v", err)
	}
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var names []string
	type served struct{ groupVersion, plural string }
	var want []served
	for _, d := range docs {
		j, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(j, &obj.Object); err != nil {
			t.Fatal(err)
		}
		if obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if _, err := dyn.Resource(GVR).Create(ctx, &obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating CRD %s: %v", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
		group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(obj.Object, "spec", "versions")
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if name, _ := vm["name"].(string); name != "" && vm["served"] == true {
				want = append(want, served{group + "/" + name, plural})
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range names {
		for !established(ctx, dyn, n) {
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established within 30s", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		for !discovered(disc, w.groupVersion, w.plural) {
			if time.Now().After(deadline) {
				t.Fatalf("%s %s not in discovery within 30s", w.groupVersion, w.plural)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return names
}

func discovered(d discovery.DiscoveryInterface, groupVersion, plural string) bool {
	rl, err := d.ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == plural {
			return true
		}
	}
	return false
}

func established(ctx context.Context, dyn dynamic.Interface, name string) bool {
	obj, err := dyn.Resource(GVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
