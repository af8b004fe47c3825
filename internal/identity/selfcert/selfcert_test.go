package selfcert

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/internal/controlclient"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/identitytest"
)

const (
	ctlToken = "ctl-token-0123456789abcdef"
	ctlID    = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local"
	webToken = "web-token-0123456789abcdef"
	webID    = "web.shop.serviceaccount.identity.linkerd.cluster.local"
)

var tokens = map[string]string{ctlToken: "linkerd/linkerd-destination", webToken: "shop/web"}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Run(ctx)
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s got no certificate", cfg.Identity)
	}
	return s
}

// serveHealth serves gRPC health with s's credentials and records the
// verified identity of each caller.
func serveHealth(t *testing.T, s *Source) (string, <-chan string) {
	t.Helper()
	callers := make(chan string, 16)
	srv := grpc.NewServer(grpc.Creds(s.ServerCredentials()), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			select {
			case callers <- PeerIdentity(ctx):
			default:
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String(), callers
}

// TestServingCertificateRotates: with three-second certificates the
// controller's serving certificate changes while the same server keeps
// running, every handshake verifies (an expired certificate is never
// served), and the caller's identity reaches the handler.
func TestServingCertificateRotates(t *testing.T) {
	ca := identitytest.StartCA(t, 3*time.Second, tokens)
	ctl := start(t, Config{Identity: ctlID, IdentityAddr: ca.Addr, IdentityName: ca.Name, Token: []byte(ctlToken),
		AnchorsPEM: ca.AnchorsPEM, MinRefresh: 50 * time.Millisecond, Log: quiet()})
	addr, callers := serveHealth(t, ctl)
	web := start(t, Config{Identity: webID, IdentityAddr: ca.Addr, IdentityName: ca.Name, Token: []byte(webToken),
		AnchorsPEM: ca.AnchorsPEM, MinRefresh: 50 * time.Millisecond, Log: quiet()})
	proxy := webManager(t, ca)

	conn, err := controlclient.Dial(addr, ctlID, proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check over mTLS: %v", err)
	}
	if got := <-callers; got != webID {
		t.Errorf("PeerIdentity in the handler = %q, want %q", got, webID)
	}

	serials := map[string]bool{}
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		c, err := tls.Dial("tcp", addr, controlclient.ClientTLS(proxy, ctlID))
		if err != nil {
			t.Fatalf("handshake after %d certificates: %v", len(serials), err)
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if time.Now().After(leaf.NotAfter) {
			t.Fatalf("served an expired certificate (not after %s)", leaf.NotAfter)
		}
		serials[leaf.SerialNumber.String()] = true
		time.Sleep(100 * time.Millisecond)
	}
	// 7 s of three-second certificates (x509 times are whole seconds:
	// 2 to 3 s left when issued) renewed at 70%: 4 or 5.
	if len(serials) < 3 {
		t.Errorf("saw %d serving certificates in 7 s of three-second certificates, want at least 3", len(serials))
	}
	t.Logf("%d serving certificates in 7 s", len(serials))
	// A controller dialing another with its own certificate (ClientTLS).
	c, err := tls.Dial("tcp", addr, web.ClientConfig(ctlID, "h2"))
	if err != nil {
		t.Fatalf("Source.ClientTLS handshake: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != ctlID {
		t.Errorf("server presented %v, want %s", got, ctlID)
	}
	c.Close()
	if _, err := tls.Dial("tcp", addr, web.ClientConfig(webID, "h2")); err == nil {
		t.Error("Source.ClientTLS accepted a server that is not the identity asked for")
	}
	if ctl.Identity() != ctlID {
		t.Error("Identity changed")
	}
}

// webManager is a proxy's certificate manager for webID (as weft-proxy
// makes it), renewed until the test ends.
func webManager(t *testing.T, ca *identitytest.CA) *certify.Manager {
	t.Helper()
	m, err := certify.New(certify.Config{Identity: webID, Token: []byte(webToken), Client: ca.Client(t), Anchors: ca.Anchors,
		MinRefresh: 50 * time.Millisecond, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go m.Run(ctx)
	return m
}

// TestNewRefusesIncompleteConfig: every required field is named.
func TestNewRefusesIncompleteConfig(t *testing.T) {
	ca := identitytest.NewCA(t, time.Hour, tokens)
	full := Config{Identity: ctlID, IdentityAddr: "127.0.0.1:1", IdentityName: ca.Name, Token: []byte(ctlToken), AnchorsPEM: ca.AnchorsPEM}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no identity", func(c *Config) { c.Identity = "" }},
		{"no identity service", func(c *Config) { c.IdentityAddr = "" }},
		{"no token", func(c *Config) { c.Token = nil }},
		{"bad anchors", func(c *Config) { c.AnchorsPEM = []byte("not PEM") }},
	} {
		c := full
		tc.edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	if _, err := New(full); err != nil {
		t.Errorf("complete config: %v", err)
	}
}
