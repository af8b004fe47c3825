package kube

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/kubetest"
)

type watcher struct {
	mu   sync.Mutex
	last destination.Snapshot
	n    int
}

func (w *watcher) update(s destination.Snapshot) {
	w.mu.Lock()
	w.last, w.n = s, w.n+1
	w.mu.Unlock()
}

// describe renders a snapshot as "addr[flags]" sorted, for comparisons.
func (w *watcher) describe() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.last.Exists {
		return "<unknown>"
	}
	var out []string
	for _, e := range w.last.Endpoints {
		s := e.Addr
		if e.Terminating {
			s += "[terminating]"
		}
		if e.Protocol == destination.ProtocolOpaque {
			s += "[opaque]"
		}
		if e.OpaqueTransportPort > 0 {
			s += fmt.Sprintf("[transport %d]", e.OpaqueTransportPort)
		}
		if e.Identity != "" {
			s += "@" + e.Identity
		}
		if p := e.Labels["dst_pod"]; p != "" {
			s += "{" + p + "}"
		}
		if len(e.ForZones) > 0 {
			s += "<for " + strings.Join(e.ForZones, "+") + ">"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func (w *watcher) wait(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := w.describe()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints = %q, want %q", got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func slice(name string, port int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port)}},
		Endpoints:   eps,
	}
}

func ep(ip string, ready, serving, terminating bool, pod string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}, Zone: ptr("zone-a"),
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating}}
	if pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return e
}

func createPod(t *testing.T, c kubernetes.Interface, ns, name, ip string, meshed bool) {
	t.Helper()
	ctx := context.Background()
	lbl := map[string]string{"linkerd.io/proxy-deployment": "web"}
	if meshed {
		lbl["linkerd.io/control-plane-ns"] = "linkerd"
	}
	containers := []corev1.Container{{Name: "app", Image: "weft.local/testapp:dev"}}
	if meshed {
		containers = append(containers, corev1.Container{Name: "linkerd-proxy", Image: "weft.local/proxy:dev",
			Ports: []corev1.ContainerPort{{Name: "linkerd-proxy", ContainerPort: 4143}, {Name: "linkerd-admin", ContainerPort: 4191}}})
	}
	p, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec:       corev1.PodSpec{ServiceAccountName: "web", Containers: containers},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestBackendFollowsTheAPIServer(t *testing.T) {
	api := kubetest.StartAPIServer(t)
	c := api.Client
	ctx := context.Background()
	const ns = "shop"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createPod(t, c, ns, "web-1", "198.18.0.11", true)
	createPod(t, c, ns, "web-2", "198.18.0.12", false)

	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	b, err := NewFromClient(c, nil, Config{ClusterDomain: "cluster.local", ControlPlaneNS: "linkerd", TrustDomain: "cluster.local"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), stop)
	if err != nil {
		t.Fatal(err)
	}
	byName, byIP := &watcher{}, &watcher{}
	for target, w := range map[string]*watcher{"web.shop.svc.cluster.local:80": byName, svc.Spec.ClusterIP + ":80": byIP} {
		cancel, err := b.Subscribe(target, w.update)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
	}
	byName.wait(t, "") // the Service exists, no endpoints yet

	id := "@web.shop.serviceaccount.identity.linkerd.cluster.local"
	s1, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-a", 8080, ep("198.18.0.11", true, true, false, "web-1")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName.wait(t, "198.18.0.11:8080"+id+"{web-1}")
	byIP.wait(t, "198.18.0.11:8080"+id+"{web-1}")

	// Scaled: a second, unmeshed endpoint in another slice.
	if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-b", 8080, ep("198.18.0.12", true, true, false, "web-2")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	byName.wait(t, "198.18.0.11:8080"+id+"{web-1},198.18.0.12:8080{web-2}")

	// Topology hints reach the endpoint.
	s2, _ := c.DiscoveryV1().EndpointSlices(ns).Get(ctx, "web-b", metav1.GetOptions{})
	s2.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}, {Name: "zone-b"}}}
	if _, err := c.DiscoveryV1().EndpointSlices(ns).Update(ctx, s2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	byName.wait(t, "198.18.0.11:8080"+id+"{web-1},198.18.0.12:8080{web-2}<for zone-a+zone-b>")

	// web-1 terminating but still serving: drained, not cut. web-2 not ready: gone.
	s1.Endpoints = []discoveryv1.Endpoint{ep("198.18.0.11", false, true, true, "web-1")}
	if _, err := c.DiscoveryV1().EndpointSlices(ns).Update(ctx, s1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s2, _ = c.DiscoveryV1().EndpointSlices(ns).Get(ctx, "web-b", metav1.GetOptions{})
	s2.Endpoints = []discoveryv1.Endpoint{ep("198.18.0.12", false, false, false, "web-2")}
	if _, err := c.DiscoveryV1().EndpointSlices(ns).Update(ctx, s2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	byName.wait(t, "198.18.0.11:8080[terminating]"+id+"{web-1}")

	// The Service is annotated opaque.
	svc, _ = c.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	svc.Annotations = map[string]string{"config.linkerd.io/opaque-ports": "80"}
	if _, err := c.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	byName.wait(t, "198.18.0.11:8080[terminating][opaque][transport 4143]@web.shop.serviceaccount.identity.linkerd.cluster.local{web-1}")
	if p, _ := b.Profile("web.shop.svc.cluster.local:80"); !p.Opaque || p.FullyQualifiedName != "web.shop.svc.cluster.local" {
		t.Errorf("profile = %+v, want opaque web.shop.svc.cluster.local", p)
	}

	// Slices deleted: the Service exists with no endpoints.
	for _, n := range []string{"web-a", "web-b"} {
		if err := c.DiscoveryV1().EndpointSlices(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	byName.wait(t, "")

	// A pod IP resolves to that pod; an unknown IP to nothing.
	pod, unknown := &watcher{}, &watcher{}
	cancel1, _ := b.Subscribe("198.18.0.11:8080", pod.update)
	cancel2, _ := b.Subscribe("198.18.99.99:80", unknown.update)
	defer cancel1()
	defer cancel2()
	pod.wait(t, "198.18.0.11:8080"+id+"{web-1}")
	unknown.wait(t, "<unknown>")
	// The Service is deleted: its name no longer resolves.
	if err := c.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	byName.wait(t, "<unknown>")
}
