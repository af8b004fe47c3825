package discovery

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/policy/outbound"
	"github.com/weftmesh/weft/internal/poll"
	"github.com/weftmesh/weft/internal/route"
)

// policyPlane is a real OutboundPolicies server (the policy controller's
// own index and server, fed directly instead of from Kubernetes) on a
// fixed loopback port that a test can stop and start again.
type policyPlane struct {
	addr string
	ix   *outbound.Index
	srv  *grpc.Server
}

func (p *policyPlane) start(t *testing.T) {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.srv = grpc.NewServer()
	policyv1.RegisterOutboundPoliciesServer(p.srv, outbound.NewServer(p.ix, quiet))
	go p.srv.Serve(l)
}

func split(stable, canary int32) *outbound.Route {
	port := int32(80)
	kind := "Service"
	return &outbound.Route{Group: outbound.GroupGateway, Kind: outbound.KindHTTP, Namespace: "shop", Name: "split",
		Spec: outbound.RouteSpec{ParentRefs: []outbound.ParentRef{{Kind: &kind, Name: "web", Port: &port}},
			Rules: []outbound.RuleSpec{{BackendRefs: []outbound.BackendRefDef{
				{BackendObjectRef: outbound.BackendObjectRef{Name: "web", Port: &port}, Weight: &stable},
				{BackendObjectRef: outbound.BackendObjectRef{Name: "web-canary", Port: &port}, Weight: &canary},
			}}}}}
}

func weights(t *route.Table) []uint32 {
	if t == nil || len(t.HTTP) != 1 || len(t.HTTP[0].Rules) != 1 {
		return nil
	}
	var w []uint32
	for _, b := range t.HTTP[0].Rules[0].Backends {
		w = append(w, b.Weight)
	}
	return w
}

func sameWeights(t *route.Table, want ...uint32) bool {
	got := weights(t)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestResolverFollowsRoutingTable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := filepath.Join(t.TempDir(), "registry.yaml")
	writeRegistry(t, reg, `services:
- name: web.shop.svc.cluster.local:80
  endpoints: [{addr: 127.0.0.1:9001}]
`)
	backend, err := destination.NewFileBackend(reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: "127.0.0.1:0", backend: backend}
	cp.start(t)
	defer func() { cp.srv.Stop() }()

	ix := outbound.NewIndex("cluster.local", quiet)
	go ix.Run(ctx)
	ix.SetService(outbound.Service{Namespace: "shop", Name: "web", Ports: []uint16{80}})
	ix.SetService(outbound.Service{Namespace: "shop", Name: "web-canary", Ports: []uint16{80}})
	ix.SetRoute(split(90, 10))
	pp := &policyPlane{addr: "127.0.0.1:0", ix: ix}
	pp.start(t)
	defer func() { pp.srv.Stop() }()

	dconn, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer dconn.Close()
	pconn, err := grpc.NewClient(pp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer pconn.Close()
	r := New(ctx, destinationv1.NewDestinationClient(dconn), Options{Log: quiet, InitialWait: 2 * time.Second,
		IdleTimeout: 400 * time.Millisecond, Policy: policyv1.NewOutboundPoliciesClient(pconn)})

	const web = "web.shop.svc.cluster.local:80"
	d, err := r.Resolve(web)
	if err != nil {
		t.Fatal(err)
	}
	// The first Resolve waited for the table.
	if tab := d.Routes.Load(); !sameWeights(tab, 90, 10) || tab.HTTP[0].Rules[0].Backends[1].Authority != "web-canary.shop.svc.cluster.local:80" {
		t.Fatalf("first table = %+v, want the 90/10 split", tab)
	}

	// A weight change reaches the proxy.
	ix.SetRoute(split(0, 1))
	poll.Until(t, 5*time.Second, "the 0/1 table", func() bool {
		r.Resolve(web) // in use: not evicted
		return sameWeights(d.Routes.Load(), 0, 1)
	})

	// The control plane goes away: the last good table stays.
	pp.srv.Stop()
	for range 6 {
		time.Sleep(50 * time.Millisecond)
		r.Resolve(web)
	}
	d2, _ := r.Resolve(web)
	if !sameWeights(d2.Routes.Load(), 0, 1) {
		t.Fatalf("table during the outage = %+v, want the last one (0/1)", d2.Routes.Load())
	}

	// Changes made while it was away arrive once it is back.
	ix.SetRoute(split(50, 50))
	pp.start(t)
	poll.Until(t, 5*time.Second, "the 50/50 table after reconnecting", func() bool {
		r.Resolve(web) // keep the watch in use
		return sameWeights(d.Routes.Load(), 50, 50)
	})

	// The route's deletion leaves the Service's own table, with no route.
	ix.DeleteRoute(outbound.GroupGateway, outbound.KindHTTP, "shop", "split")
	poll.Until(t, 5*time.Second, "the table without routes", func() bool {
		r.Resolve(web)
		tab := d.Routes.Load()
		return tab != nil && len(tab.HTTP) == 0 && tab.Parent.Name == "web"
	})

	// Unused, the watch is evicted and its policy stream ends.
	poll.Until(t, 5*time.Second, "idle eviction", func() bool { return r.Watches() == 0 && ix.Watchers() == 0 })

	// A target that is no Service port gets no table (forwarded as addressed).
	d3, _ := r.Resolve("127.0.0.1:9")
	if tab := d3.Routes.Load(); tab != nil {
		t.Errorf("table of an IP target = %+v, want none", tab)
	}
}

// scripted is an OutboundPolicies server that sends what the test gives it.
type scripted struct {
	policyv1.UnimplementedOutboundPoliciesServer
	msgs chan *policyv1.OutboundPolicy
}

func (s *scripted) Watch(_ *policyv1.OutboundRequest, stream policyv1.OutboundPolicies_WatchServer) error {
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case m := <-s.msgs:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// TestResolverRefusesUnusableTables: a table the proxy cannot use whole
// (a mirror of 150 %) is refused, and the last good one stays.
func TestResolverRefusesUnusableTables(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := filepath.Join(t.TempDir(), "registry.yaml")
	writeRegistry(t, reg, "services:\n- name: web.shop.svc.cluster.local:80\n  endpoints: [{addr: 127.0.0.1:9001}]\n")
	backend, err := destination.NewFileBackend(reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{addr: "127.0.0.1:0", backend: backend}
	cp.start(t)
	defer func() { cp.srv.Stop() }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sc := &scripted{msgs: make(chan *policyv1.OutboundPolicy, 4)}
	srv := grpc.NewServer()
	policyv1.RegisterOutboundPoliciesServer(srv, sc)
	go srv.Serve(l)
	defer srv.Stop()
	dconn, _ := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer dconn.Close()
	pconn, _ := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer pconn.Close()
	r := New(ctx, destinationv1.NewDestinationClient(dconn), Options{Log: quiet, Policy: policyv1.NewOutboundPoliciesClient(pconn)})

	good := func(weight uint32) *policyv1.OutboundPolicy {
		return &policyv1.OutboundPolicy{Found: true, Parent: &policyv1.ParentRef{Namespace: "shop", Name: "web", Port: 80},
			HttpRoutes: []*policyv1.HttpRoute{{Meta: &policyv1.RouteMeta{Name: "r"}, Rules: []*policyv1.HttpRule{{
				Backends: []*policyv1.Backend{{Name: "web", Port: 80, Authority: "web.shop.svc.cluster.local:80", Weight: weight}}}}}}}
	}
	sc.msgs <- good(7)
	const web = "web.shop.svc.cluster.local:80"
	d, _ := r.Resolve(web)
	if !sameWeights(d.Routes.Load(), 7) {
		t.Fatalf("first table = %+v", d.Routes.Load())
	}
	bad := good(8)
	bad.HttpRoutes[0].Rules[0].Filters = []*policyv1.Filter{{Kind: &policyv1.Filter_RequestMirror{RequestMirror: &policyv1.Mirror{
		Backend: &policyv1.Backend{Name: "shadow", Port: 80}, Percent: 150}}}}
	sc.msgs <- bad
	sc.msgs <- good(9)
	poll.Until(t, 5*time.Second, "the next good table", func() bool { return sameWeights(d.Routes.Load(), 9) })
	if n := r.PolicyUpdates(web); n != 2 {
		t.Errorf("%d tables stored, want 2 (the bad one refused)", n)
	}
}
