package kube_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/kubetest/crds"
	"github.com/weftmesh/weft/internal/policy/outbound"
	"github.com/weftmesh/weft/internal/policy/outbound/kube"
	"github.com/weftmesh/weft/internal/poll"
	"github.com/weftmesh/weft/internal/route"
	"github.com/weftmesh/weft/internal/routeapi"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// cluster is a real API server with Weft's CRDs, the outbound index fed
// from it and the OutboundPolicies server on loopback.
type cluster struct {
	client kubernetes.Interface
	dyn    dynamic.Interface
	ix     *outbound.Index
	ad     *kube.Adapter
	policy policyv1.OutboundPoliciesClient
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	return startClusterWith(t, map[string]any{})
}

// startClusterWith is startCluster with weft-crds rendered with crdValues.
func startClusterWith(t testing.TB, crdValues map[string]any) *cluster {
	t.Helper()
	a := kubetest.StartAPIServer(t)
	dyn, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds.Install(t, a.Config, crdValues)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ix := outbound.NewIndex("cluster.local", quiet)
	ad, err := kube.Start(ctx, a.Client, dyn, ix, quiet)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "informers synced", ad.Ready)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	policyv1.RegisterOutboundPoliciesServer(srv, outbound.NewServer(ix, quiet))
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &cluster{client: a.Client, dyn: dyn, ix: ix, ad: ad, policy: policyv1.NewOutboundPoliciesClient(conn)}
}

func (c *cluster) namespace(t testing.TB, ns string) {
	t.Helper()
	if _, err := c.client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) service(t testing.TB, ns, name string, annotations map[string]string) *corev1.Service {
	t.Helper()
	s, err := c.client.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}, Selector: map[string]string{"app": name}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apply creates or replaces the object of a YAML document.
func (c *cluster) apply(t testing.TB, doc string) *unstructured.Unstructured {
	t.Helper()
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	gv, err := schema.ParseGroupVersion(obj.GetAPIVersion())
	if err != nil {
		t.Fatal(err)
	}
	res := strings.ToLower(obj.GetKind()) + "s"
	ri := c.dyn.Resource(gv.WithResource(res)).Namespace(obj.GetNamespace())
	old, err := ri.Get(context.Background(), obj.GetName(), metav1.GetOptions{})
	var out *unstructured.Unstructured
	if err == nil {
		obj.SetResourceVersion(old.GetResourceVersion())
		out, err = ri.Update(context.Background(), &obj, metav1.UpdateOptions{})
	} else {
		out, err = ri.Create(context.Background(), &obj, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	return out
}

// conditions reads a route's status conditions (ours) as type → "Status/Reason".
func (c *cluster) conditions(t testing.TB, gvr schema.GroupVersionResource, ns, name string) (map[string]string, string) {
	t.Helper()
	u, err := c.dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := kube.Decode(gvr.Group, "", u)
	if err != nil {
		t.Fatal(err)
	}
	out, msgs := map[string]string{}, ""
	for _, p := range r.Status {
		if p.ControllerName != "linkerd.io/policy-controller" {
			continue
		}
		for _, cd := range p.Conditions {
			out[cd.Type] = cd.Status + "/" + cd.Reason
			msgs += cd.Message + "; "
		}
	}
	return out, msgs
}

// stream follows a target's tables.
type stream struct {
	tables chan *route.Table
}

func (c *cluster) watch(t testing.TB, target, token string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := c.policy.Watch(ctx, &policyv1.OutboundRequest{Target: target, ContextToken: token})
	if err != nil {
		t.Fatal(err)
	}
	st := &stream{tables: make(chan *route.Table, 100)}
	go func() {
		defer close(st.tables)
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			tab, err := routeapi.Decode(m)
			if err != nil {
				panic(fmt.Sprintf("the server sent an undecodable table: %v", err))
			}
			st.tables <- tab
		}
	}()
	return st
}

// await reads tables until one satisfies cond.
func (s *stream) await(t testing.TB, what string, cond func(*route.Table) bool) *route.Table {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case tab, ok := <-s.tables:
			if !ok {
				t.Fatalf("stream ended waiting for %s", what)
			}
			if cond(tab) {
				return tab
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func routeNames(tab *route.Table) string {
	var n []string
	for _, r := range tab.HTTP {
		n = append(n, r.Meta.Name)
	}
	for _, r := range tab.GRPC {
		n = append(n, "grpc:"+r.Meta.Name)
	}
	return strings.Join(n, ",")
}

func weightsOf(tab *route.Table, name string) string {
	for _, r := range tab.HTTP {
		if r.Meta.Name == name && len(r.Rules) > 0 {
			var w []string
			for _, b := range r.Rules[0].Backends {
				w = append(w, fmt.Sprintf("%s=%d", b.Name, b.Weight))
			}
			return strings.Join(w, ",")
		}
	}
	return ""
}
