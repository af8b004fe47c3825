package kube

import (
	"context"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/inboundpolicy"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/kubetest/crds"
)

// TestServerProxyProtocolOpaque: against a real API server, a Server
// selecting a meshed pod's port with proxyProtocol opaque makes that
// port's endpoints opaque (with the opaque transport), by Service and by
// pod IP, as config.linkerd.io/opaque-ports does; its other ports, a
// Server declaring another protocol and a deleted Server leave them as
// they were.
func TestServerProxyProtocolOpaque(t *testing.T) {
	api := kubetest.StartAPIServer(t)
	c := api.Client
	dyn, err := dynamic.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds.Install(t, api.Config, nil)
	ctx := context.Background()
	const ns = "shop"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "mail"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "mail-0", Labels: map[string]string{"app": "mail", "linkerd.io/control-plane-ns": "linkerd"}},
		Spec: corev1.PodSpec{ServiceAccountName: "mail", Containers: []corev1.Container{
			{Name: "app", Image: "weft.local/testapp:dev", Ports: []corev1.ContainerPort{{Name: "smtp", ContainerPort: 2525}, {Name: "http", ContainerPort: 8080}}},
			{Name: "linkerd-proxy", Image: "weft.local/proxy:dev", Ports: []corev1.ContainerPort{{Name: "linkerd-proxy", ContainerPort: 4143}}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP, pod.Status.PodIPs = "198.18.0.31", []corev1.PodIP{{IP: "198.18.0.31"}}
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "mail"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "smtp", Port: 25}, {Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := true
	if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "mail-a", Labels: map[string]string{discoveryv1.LabelServiceName: "mail"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("smtp"), Port: ptr(int32(2525))}, {Name: ptr("http"), Port: ptr(int32(8080))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.31"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "mail-0"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	b, err := NewFromClient(c, dyn, Config{ClusterDomain: "cluster.local", ControlPlaneNS: "linkerd", TrustDomain: "cluster.local"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), stop)
	if err != nil {
		t.Fatal(err)
	}
	// The proxy's admin port and a skipped port are reached in plaintext
	// (a meshed Prometheus scrapes 4191); a control-plane pod labelled
	// for the mesh but without a proxy is not meshed.
	if _, err := c.CoreV1().Pods(ns).Patch(ctx, "mail-0", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"config.linkerd.io/skip-inbound-ports":"9000-9100"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ctl, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "controller-0", Labels: map[string]string{"linkerd.io/control-plane-ns": "linkerd"}},
		Spec: corev1.PodSpec{ServiceAccountName: "mail", Containers: []corev1.Container{
			{Name: "identity", Image: "weft.local/controller:dev", Ports: []corev1.ContainerPort{{Name: "admin-http", ContainerPort: 9990}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctl.Status.PodIP, ctl.Status.PodIPs = "198.18.0.32", []corev1.PodIP{{IP: "198.18.0.32"}}
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, ctl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	admin, skipped, ctlAdmin := &watcher{}, &watcher{}, &watcher{}
	smtp, byIP, http := &watcher{}, &watcher{}, &watcher{}
	for target, w := range map[string]*watcher{"mail.shop.svc.cluster.local:25": smtp, "198.18.0.31:2525": byIP, "mail.shop.svc.cluster.local:80": http,
		"198.18.0.31:4191": admin, "198.18.0.31:9050": skipped, "198.18.0.32:9990": ctlAdmin} {
		cancel, err := b.Subscribe(target, w.update)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
	}
	const id = "@mail.shop.serviceaccount.identity.linkerd.cluster.local{mail-0}"
	smtp.wait(t, "198.18.0.31:2525"+id)
	byIP.wait(t, "198.18.0.31:2525"+id)
	http.wait(t, "198.18.0.31:8080"+id)
	admin.wait(t, "198.18.0.31:4191{mail-0}")
	skipped.wait(t, "198.18.0.31:9050{mail-0}")
	ctlAdmin.wait(t, "198.18.0.32:9990{controller-0}")

	servers := dyn.Resource(inboundpolicy.ServersGVR).Namespace(ns)
	server := func(proto string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(`
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: mail-smtp, namespace: shop}
spec:
  podSelector: {matchLabels: {app: mail}}
  port: smtp
  proxyProtocol: `+proto), &u.Object); err != nil {
			t.Fatal(err)
		}
		return u
	}
	created, err := servers.Create(ctx, server("opaque"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const opaque = "198.18.0.31:2525[opaque][transport 4143]" + id
	smtp.wait(t, opaque)
	byIP.wait(t, opaque)
	http.wait(t, "198.18.0.31:8080"+id) // the Server selects smtp only
	if p, _ := b.Profile("mail.shop.svc.cluster.local:25"); p.Opaque {
		t.Errorf("profile marked opaque: the Service's annotation does that, a Server marks endpoints")
	}

	// Declared HTTP/1 instead: detected again.
	u := server("HTTP/1")
	u.SetResourceVersion(created.GetResourceVersion())
	if created, err = servers.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	smtp.wait(t, "198.18.0.31:2525"+id)

	// Opaque again, then deleted.
	u = server("opaque")
	u.SetResourceVersion(created.GetResourceVersion())
	if _, err = servers.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	smtp.wait(t, opaque)
	if err := servers.Delete(ctx, "mail-smtp", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	smtp.wait(t, "198.18.0.31:2525"+id)
	byIP.wait(t, "198.18.0.31:2525"+id)
}

// TestServersCRDAbsent: without the policy CRDs the backend starts and
// serves endpoints (only annotations mark opaque ports).
func TestServersCRDAbsent(t *testing.T) {
	api := kubetest.StartAPIServer(t)
	dyn, err := dynamic.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	b, err := NewFromClient(api.Client, dyn, Config{ClusterDomain: "cluster.local", ControlPlaneNS: "linkerd", TrustDomain: "cluster.local"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), stop)
	if err != nil {
		t.Fatalf("without the CRDs: %v", err)
	}
	if b.servers != nil {
		t.Error("a Server lister without the CRD")
	}
	w := &watcher{}
	cancel, err := b.Subscribe("198.18.0.99:80", w.update)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	w.wait(t, "<unknown>")
}
