package kube

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/destination/desttest"
	"github.com/weftmesh/weft/internal/kubetest"
)

func TestSlimNodeKeepsTheZoneOnly(t *testing.T) {
	tests := []struct {
		name string
		in   *corev1.Node
		want map[string]string
	}{
		{"zoned", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a", "kubernetes.io/os": "linux"}},
			Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"big"}}}}}, map[string]string{corev1.LabelTopologyZone: "zone-a"}},
		{"no zone", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"kubernetes.io/os": "linux"}}}, nil},
	}
	for _, tt := range tests {
		obj, err := slimNode(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got := obj.(*corev1.Node)
		if got.Name != "n" || len(got.Status.Images) != 0 || len(got.Labels) != len(tt.want) || got.Labels[corev1.LabelTopologyZone] != tt.want[corev1.LabelTopologyZone] {
			t.Errorf("%s: slim node %+v, want name n and labels %v only", tt.name, got, tt.want)
		}
	}
}

// lastOctet shortens "198.18.1.N:8080" to "N".
func lastOctet(a string) string {
	return strings.TrimSuffix(strings.TrimPrefix(a, "198.18.1."), ":8080")
}

func hinted(ip, zone string, forZones ...string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}, Zone: ptr(zone)}
	if len(forZones) > 0 {
		e.Hints = &discoveryv1.EndpointHints{}
		for _, z := range forZones {
			e.Hints.ForZones = append(e.Hints.ForZones, discoveryv1.ForZone{Name: z})
		}
	}
	return e
}

func setNode(t *testing.T, c kubernetes.Interface, name, zone string) {
	t.Helper()
	ctx := context.Background()
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		n = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zone}}}
		if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	n.Labels[corev1.LabelTopologyZone] = zone
	if _, err := c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestWatchAppliesTopologyHints: two nodes in two zones, a Service whose
// EndpointSlice carries hints, and Watch streams from callers on different
// nodes: each gets its zone's endpoints, and follows hint changes, new
// nodes and zone relabelling; a caller without a known zone gets them all.
func TestWatchAppliesTopologyHints(t *testing.T) {
	api := kubetest.StartAPIServer(t)
	c := api.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "shop"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setNode(t, c, "node-a", "zone-a")
	setNode(t, c, "node-b", "zone-b")
	sl, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice("web-hints", 8080,
		hinted("198.18.1.1", "zone-a", "zone-a"), hinted("198.18.1.2", "zone-b", "zone-b"), hinted("198.18.1.3", "zone-b", "zone-b")),
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	defer close(stop)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := NewFromClient(c, nil, Config{ClusterDomain: "cluster.local", ControlPlaneNS: "linkerd", TrustDomain: "cluster.local"}, log, stop)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, destination.NewServer(b, log))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := destinationv1.NewDestinationClient(cc)
	const target = "web.shop.svc.cluster.local:80"
	token := func(node string) string { return `{"ns":"shop","nodeName":"` + node + `","pod":"client"}` }
	streams := map[string]*desttest.Set{
		"node-a": desttest.Watch(ctx, t, client, target, token("node-a")),
		"node-b": desttest.Watch(ctx, t, client, target, token("node-b")),
		"node-c": desttest.Watch(ctx, t, client, target, token("node-c")), // not a node yet
		"none":   desttest.Watch(ctx, t, client, target, ""),
	}
	check := func(step string, want map[string]string) {
		t.Helper()
		for name, w := range streams {
			w.WaitFor(t, step+", "+name, want[name], lastOctet)
		}
	}
	check("hinted per zone", map[string]string{"node-a": "1", "node-b": "2,3", "node-c": "1,2,3", "none": "1,2,3"})

	// .3 is now hinted for zone-a instead.
	sl.Endpoints[2] = hinted("198.18.1.3", "zone-b", "zone-a")
	if sl, err = c.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("hint changed", map[string]string{"node-a": "1,3", "node-b": "2", "node-c": "1,2,3", "none": "1,2,3"})

	// node-c joins in zone-b; node-a is relabelled zone-b.
	setNode(t, c, "node-c", "zone-b")
	check("node-c joined", map[string]string{"node-a": "1,3", "node-b": "2", "node-c": "2", "none": "1,2,3"})
	setNode(t, c, "node-a", "zone-b")
	check("node-a relabelled", map[string]string{"node-a": "2", "node-b": "2", "node-c": "2", "none": "1,2,3"})
	if z := b.ZoneOf("node-a"); z != "zone-b" {
		t.Errorf("ZoneOf(node-a) = %q, want zone-b", z)
	}

	// One endpoint loses its hints: hints are ignored, everyone gets all.
	sl.Endpoints[0] = hinted("198.18.1.1", "zone-a")
	if _, err = c.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("hints incomplete", map[string]string{"node-a": "1,2,3", "node-b": "1,2,3", "node-c": "1,2,3", "none": "1,2,3"})
}
