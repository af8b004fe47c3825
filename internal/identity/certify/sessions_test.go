package certify

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weftmesh/weft/internal/identity"
)

const (
	apiID = "api.shop.serviceaccount.identity.linkerd.cluster.local"
	dbID  = "db.shop.serviceaccount.identity.linkerd.cluster.local"
)

// meshService issues web, api and db identities.
func meshService(t testing.TB) (*identity.Service, *x509.CertPool) {
	t.Helper()
	return serviceFor(t, time.Hour, "web-token-0123456789 shop/web\napi-token-0123456789 shop/api\ndb-token-0123456789 shop/db\n")
}

// certified is a Manager for id (token name-token) holding a certificate.
func certified(t testing.TB, svc *identity.Service, anchors *x509.CertPool, id string) *Manager {
	t.Helper()
	m, err := New(Config{Identity: id, Token: []byte(strings.SplitN(id, ".", 2)[0] + "-token-0123456789"), Client: localClient{svc},
		Anchors: anchors, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// meshServer serves m's MeshServerConfig on loopback: every connection is
// answered with the client identity it verified and whether it resumed.
func meshServer(t testing.TB, m *Manager) string {
	t.Helper()
	return serveMesh(t, m, func(tc *tls.Conn) {
		if err := tc.Handshake(); err != nil {
			return
		}
		cs := tc.ConnectionState()
		fmt.Fprintf(tc, "%s %v\n", PeerIdentity(cs), cs.DidResume)
	})
}

// serveMesh accepts TLS connections with m's MeshServerConfig on loopback
// until the test ends, runs handle on each, then drains and closes it.
func serveMesh(t testing.TB, m *Manager, handle func(*tls.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, m.MeshServerConfig("test/1"))
				handle(tc)
				io.Copy(io.Discard, tc)
			}()
		}
	}()
	return l.Addr().String()
}

// dialMesh connects from m to addr expecting serverID and returns whether
// the client resumed and what the server reported.
func dialMesh(t testing.TB, m *Manager, addr, serverID string) (resumed bool, server string, err error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, m.MeshClientConfig(serverID, addr, "test/1"))
	if err := tc.Handshake(); err != nil {
		return false, "", err
	}
	// Reading the server's line also reads the session ticket sent before it.
	line, err := bufio.NewReader(tc).ReadString('\n')
	if err != nil {
		return false, "", err
	}
	return tc.ConnectionState().DidResume, strings.TrimSpace(line), nil
}

type dialResult struct {
	resumed bool
	server  string
}

func mustDial(t *testing.T, m *Manager, addr, serverID string) dialResult {
	t.Helper()
	resumed, server, err := dialMesh(t, m, addr, serverID)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", addr, serverID, err)
	}
	return dialResult{resumed, server}
}

func TestMeshSessionResumesWithTheClientIdentity(t *testing.T) {
	svc, anchors := meshService(t)
	web, api := certified(t, svc, anchors, webID), certified(t, svc, anchors, apiID)
	addr := meshServer(t, api)
	want := []dialResult{
		{false, webID + " false"},
		{true, webID + " true"}, // the server still sees web's verified identity
		{true, webID + " true"},
	}
	for i, w := range want {
		if got := mustDial(t, web, addr, apiID); got != w {
			t.Errorf("connection %d = %+v, want %+v", i+1, got, w)
		}
	}
	if got := testutil.ToFloat64(web.handshakes.WithLabelValues("client", "true")); got != 2 {
		t.Errorf("client resumed handshakes = %v, want 2", got)
	}
	if got := testutil.ToFloat64(api.handshakes.WithLabelValues("server", "false")); got != 1 {
		t.Errorf("server full handshakes = %v, want 1", got)
	}
}

func TestMeshSessionNeverResumedForAnotherIdentity(t *testing.T) {
	svc, anchors := meshService(t)
	web, api := certified(t, svc, anchors, webID), certified(t, svc, anchors, apiID)
	addr := meshServer(t, api)
	mustDial(t, web, addr, apiID)
	if got := mustDial(t, web, addr, apiID); !got.resumed {
		t.Fatalf("second connection to api not resumed: %+v", got)
	}
	// The same address, now expected to be db: api's session must not be
	// offered, and api's certificate must be refused.
	if resumed, server, err := dialMesh(t, web, addr, dbID); err == nil {
		t.Errorf("connection expecting %s to a proxy that is %s succeeded (resumed %v, server %q)", dbID, apiID, resumed, server)
	}
	// Even if a faulty cache handed api's session to a connection expecting
	// db, it must not be resumed into it.
	g := web.mesh.Load()
	cs, ok := g.sessions.Get(addr + "\x00" + apiID)
	if !ok {
		t.Fatal("no cached session for api")
	}
	g.sessions.Put(addr+"\x00"+dbID, cs)
	if resumed, server, err := dialMesh(t, web, addr, dbID); err == nil {
		t.Errorf("api's session under db's key: connection succeeded (resumed %v, server %q)", resumed, server)
	}
}

func TestMeshSessionsPerAddress(t *testing.T) {
	svc, anchors := meshService(t)
	web := certified(t, svc, anchors, webID)
	// Two replicas of api: the same identity, different proxies (keys).
	a := meshServer(t, certified(t, svc, anchors, apiID))
	b := meshServer(t, certified(t, svc, anchors, apiID))
	for i, step := range []struct {
		addr    string
		resumed bool
	}{{a, false}, {b, false}, {a, true}, {b, true}} {
		if got := mustDial(t, web, step.addr, apiID); got.resumed != step.resumed {
			t.Errorf("step %d (%s): resumed = %v, want %v", i+1, step.addr, got.resumed, step.resumed)
		}
	}
}

func TestMeshSessionNotResumedAfterRenewal(t *testing.T) {
	svc, anchors := meshService(t)
	web, api := certified(t, svc, anchors, webID), certified(t, svc, anchors, apiID)
	addr := meshServer(t, api)
	tests := []struct {
		name  string
		renew *Manager
	}{
		{"client renewed", web},
		{"server renewed", api},
	}
	for _, tt := range tests {
		mustDial(t, web, addr, apiID)
		if got := mustDial(t, web, addr, apiID); !got.resumed {
			t.Fatalf("%s: not resumed before the renewal: %+v", tt.name, got)
		}
		if _, err := tt.renew.Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := mustDial(t, web, addr, apiID); got.resumed || got.server != webID+" false" {
			t.Errorf("%s: first connection after the renewal = %+v, want a full handshake", tt.name, got)
		}
		if got := mustDial(t, web, addr, apiID); !got.resumed {
			t.Errorf("%s: second connection after the renewal not resumed: %+v", tt.name, got)
		}
	}
}

func TestMeshConfigsBeforeTheFirstCertificate(t *testing.T) {
	svc, anchors := meshService(t)
	m, err := New(Config{Identity: webID, Token: []byte("web-token-0123456789"), Client: localClient{svc}, Anchors: anchors})
	if err != nil {
		t.Fatal(err)
	}
	if m.MeshServerConfig("h2") != nil || m.MeshClientConfig(apiID, "127.0.0.1:1") != nil {
		t.Error("mesh configurations before the first certificate, want nil")
	}
}

// BenchmarkMeshHandshake is the cost of one proxy-to-proxy connection
// (TCP connect, TLS 1.3 handshake with certificates on both sides, one
// byte back, both ends in this process) by key exchange (Go's default
// X25519MLKEM768 hybrid, or X25519 alone) and resumption.
func BenchmarkMeshHandshake(b *testing.B) {
	svc, anchors := meshService(b)
	web, api := certified(b, svc, anchors, webID), certified(b, svc, anchors, apiID)
	addr := serveMesh(b, api, func(tc *tls.Conn) { tc.Write([]byte{1}) })
	for _, kx := range []struct {
		name   string
		curves []tls.CurveID
	}{{"hybrid", nil}, {"x25519", []tls.CurveID{tls.X25519}}} {
		for _, resume := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/resumed=%v", kx.name, resume), func(b *testing.B) {
				cfg := web.MeshClientConfig(apiID, addr+"/"+kx.name, "test/1")
				cfg.CurvePreferences = kx.curves
				if !resume {
					cfg.ClientSessionCache = nil
				}
				buf := make([]byte, 1)
				resumed := 0
				for b.Loop() {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					tc := tls.Client(c, cfg)
					if _, err := io.ReadFull(tc, buf); err != nil {
						b.Fatal(err)
					}
					if tc.ConnectionState().DidResume {
						resumed++
					}
					c.Close()
				}
				b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
			})
		}
	}
}
