package policyclient

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
)

// scriptedPolicies is an InboundPolicies server that sends what the test
// puts on its channel, one stream at a time.
type scriptedPolicies struct {
	policyv1.UnimplementedInboundPoliciesServer
	send chan *policyv1.InboundPolicy
}

func (s *scriptedPolicies) Watch(_ *policyv1.InboundRequest, stream policyv1.InboundPolicies_WatchServer) error {
	for {
		select {
		case m := <-s.send:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// TestPendingPortsFailClosed: while the control plane has sent a port no
// usable policy (silent, then an undecodable one), the port denies
// everyone but the pod's probes, whatever the static default says; the
// first usable policy then applies.
func TestPendingPortsFailClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	script := &scriptedPolicies{send: make(chan *policyv1.InboundPolicy)}
	policyv1.RegisterInboundPoliciesServer(srv, script)
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	static, err := authz.NewStatic(authz.StaticConfig{Default: authz.AllUnauthenticated, Probes: map[uint16][]string{8080: {"/ready"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, policyv1.NewInboundPoliciesClient(conn), Options{Workload: "shop:web-0", Static: static,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), FirstWait: 100 * time.Millisecond})
	anyone := authz.Client{Addr: netip.MustParseAddr("198.18.0.9")}
	check := func(what string, wantApp, wantProbe bool) {
		t.Helper()
		p := c.Policy(8080)
		if got := p.CheckRequest(anyone, "GET", "/app", nil).Allowed; got != wantApp {
			t.Errorf("%s: GET /app allowed %v, want %v", what, got, wantApp)
		}
		if got := p.CheckRequest(anyone, "GET", "/ready", nil).Allowed; got != wantProbe {
			t.Errorf("%s: the probe allowed %v, want %v", what, got, wantProbe)
		}
		if got := p.CheckConn(anyone).Allowed; got != wantApp {
			t.Errorf("%s: TCP allowed %v, want %v", what, got, wantApp)
		}
	}
	check("no policy yet", false, true)
	script.send <- &policyv1.InboundPolicy{DefaultPolicy: "allow"} // undecodable
	time.Sleep(100 * time.Millisecond)
	check("an unusable first policy", false, true)
	script.send <- &policyv1.InboundPolicy{DefaultPolicy: string(authz.AllUnauthenticated)}
	deadline := time.Now().Add(5 * time.Second)
	for !c.Policy(8080).CheckConn(anyone).Allowed {
		if time.Now().After(deadline) {
			t.Fatal("the first usable policy never applied")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchedPortsBounded: a port scan cannot open a stream per port; the
// ports past the bound are denied (probes admitted) without a watch.
func TestWatchedPortsBounded(t *testing.T) {
	static, err := authz.NewStatic(authz.StaticConfig{Default: authz.AllUnauthenticated})
	if err != nil {
		t.Fatal(err)
	}
	script := &scriptedPolicies{send: make(chan *policyv1.InboundPolicy)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	policyv1.RegisterInboundPoliciesServer(srv, script)
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, policyv1.NewInboundPoliciesClient(conn), Options{Workload: "shop:web-0", Static: static,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), FirstWait: time.Millisecond})
	for port := uint16(1); port <= MaxWatchedPorts+50; port++ {
		c.Policy(port)
	}
	c.mu.Lock()
	n := len(c.port)
	c.mu.Unlock()
	if n != MaxWatchedPorts {
		t.Errorf("%d ports watched after %d tried, want %d", n, MaxWatchedPorts+50, MaxWatchedPorts)
	}
	if c.Policy(MaxWatchedPorts + 10).CheckConn(authz.Client{Addr: netip.MustParseAddr("198.18.0.9")}).Allowed {
		t.Error("a port past the bound allowed a connection")
	}
}
