package kube

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/poll"
)

const spCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: serviceprofiles.linkerd.io}
spec:
  group: linkerd.io
  scope: Namespaced
  names: {kind: ServiceProfile, plural: serviceprofiles, singular: serviceprofile, shortNames: [sp]}
  versions:
  - name: v1alpha2
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

const sp = `apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: books.shop.svc.cluster.local, namespace: shop}
spec:
  routes:
  - name: GET /books
    condition: {method: GET, pathRegex: /books}
    timeout: 300ms
    isRetryable: true
    responseClasses:
    - condition: {status: {min: 500, max: 599}}
      isFailure: true
  - name: POST /books
    condition:
      all:
      - method: POST
      - pathRegex: /books
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
`

func create(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, ns, doc string) *unstructured.Unstructured {
	t.Helper()
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if ns != "" {
		ri = dyn.Resource(gvr).Namespace(ns)
	}
	out, err := ri.Create(context.Background(), &obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServiceProfiles: a ServiceProfile's routes, timeouts, retries and
// budget reach the profile stream, and its changes follow.
func TestServiceProfiles(t *testing.T) {
	api := kubetest.StartAPIServer(t)
	c := api.Client
	dyn, err := dynamic.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	create(t, dyn, schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, "", spCRD)
	c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	if _, err := c.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "books"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) { // the CRD becomes served
		if _, err := c.Discovery().ServerResourcesForGroupVersion("linkerd.io/v1alpha2"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	b, err := NewFromClient(c, dyn, Config{ClusterDomain: "cluster.local", ControlPlaneNS: "linkerd", TrustDomain: "cluster.local"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), stop)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []destination.Profile
	cancel, err := b.SubscribeProfile("books.shop.svc.cluster.local:80", func(p destination.Profile) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	last := func() destination.Profile {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1]
	}
	if p := last(); len(p.Routes) != 0 || p.FullyQualifiedName != "books.shop.svc.cluster.local" {
		t.Fatalf("before the ServiceProfile: %+v", p)
	}
	spGVR := ServiceProfileGVR
	created := create(t, dyn, spGVR, "shop", sp)
	poll.Until(t, 10*time.Second, "the condition", func() bool { return len(last().Routes) == 2 })
	p := last()
	get := p.Routes[0]
	if get.Name != "GET /books" || get.Method != "GET" || get.PathRegex != "/books" || get.Timeout != 300*time.Millisecond ||
		!get.Retryable || len(get.Classes) != 1 || get.Classes[0] != (destination.ResponseClass{StatusMin: 500, StatusMax: 599, Failure: true}) {
		t.Errorf("route 0 = %+v", get)
	}
	if post := p.Routes[1]; post.Method != "POST" || post.PathRegex != "/books" || post.Retryable {
		t.Errorf("route 1 (conditions under all) = %+v", post)
	}
	if rb := p.RetryBudget; rb == nil || rb.Ratio != 0.2 || rb.MinPerSecond != 10 || rb.TTL != 10*time.Second {
		t.Errorf("retry budget = %+v", rb)
	}
	// Edited: the stream follows.
	routes, _, _ := unstructured.NestedSlice(created.Object, "spec", "routes")
	routes[0].(map[string]any)["timeout"] = "1s"
	unstructured.SetNestedSlice(created.Object, routes, "spec", "routes")
	if _, err := dyn.Resource(spGVR).Namespace("shop").Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the condition", func() bool { r := last().Routes; return len(r) == 2 && r[0].Timeout == time.Second })
	// Deleted: no routes.
	if err := dyn.Resource(spGVR).Namespace("shop").Delete(ctx, created.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the condition", func() bool { return len(last().Routes) == 0 })
}
