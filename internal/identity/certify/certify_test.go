package certify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/identity/statictoken"
)

const webID = "web.shop.serviceaccount.identity.linkerd.cluster.local"

// localClient calls a Service in-process through the generated client API.
type localClient struct{ svc *identity.Service }

func (c localClient) Certify(ctx context.Context, in *identityv1.CertifyRequest, _ ...grpc.CallOption) (*identityv1.CertifyResponse, error) {
	return c.svc.Certify(ctx, in)
}

func newService(t testing.TB, lifetime time.Duration) (*identity.Service, *x509.CertPool) {
	t.Helper()
	return serviceFor(t, lifetime, "web-token-0123456789abcdef shop/web\n")
}

// serviceFor is an identity service with its own root, certifying the
// tokens of a statictoken file.
func serviceFor(t testing.TB, lifetime time.Duration, tokens string) (*identity.Service, *x509.CertPool) {
	t.Helper()
	root, _ := pki.NewRoot("root", time.Now().Add(-time.Hour), 24*time.Hour)
	anchors, _, _ := pki.AnchorPool(root.CertPEM)
	iss, _ := pki.NewIssuer(root, "issuer", time.Now().Add(-time.Minute), 12*time.Hour)
	ca, err := localca.New(iss.CertPEM, iss.KeyPEM, anchors, localca.Options{ClockSkewAllowance: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v, err := statictoken.Parse(strings.NewReader(tokens), "linkerd", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	return identity.NewService(identity.ServiceConfig{Validator: v, Issuer: ca, Lifetime: lifetime,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), anchors
}

func newManager(t testing.TB, svc *identity.Service, anchors *x509.CertPool) *Manager {
	t.Helper()
	m, err := New(Config{Identity: webID, Token: []byte("web-token-0123456789abcdef"), Client: localClient{svc},
		Anchors: anchors, MinRefresh: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRenewsAtSeventyPercent(t *testing.T) {
	svc, anchors := newService(t, time.Second)
	m := newManager(t, svc, anchors)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	select {
	case <-m.Ready():
	case <-time.After(2 * time.Second):
		t.Fatal("no certificate")
	}
	time.Sleep(1600 * time.Millisecond) // renewals at ~0.7s, ~1.4s
	// NotAfter has one-second granularity, so only bound the count loosely:
	// it renews before expiry, and does not hammer the service.
	if n := testutil.ToFloat64(m.refresh); n < 2 || n > 12 {
		t.Errorf("refreshed %v times in 1.6s with a 1s lifetime, want 2-12", n)
	}
	if exp := testutil.ToFloat64(m.expiry); exp < float64(time.Now().Unix()) {
		t.Errorf("expiry gauge %v is in the past", exp)
	}
}

func TestRenewDelay(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		remaining time.Duration
		want      time.Duration
	}{
		{24 * time.Hour, 16*time.Hour + 48*time.Minute},
		{100 * time.Second, 70 * time.Second},
		{5 * time.Second, 10 * time.Second},   // floor
		{-time.Minute, 10 * time.Second},      // already expired: soon, not now
		{60 * 24 * time.Hour, 24 * time.Hour}, // ceiling
	}
	for _, tt := range tests {
		if got := renewDelay(now.Add(tt.remaining), now, 10*time.Second, 24*time.Hour); got != tt.want {
			t.Errorf("renewDelay(%v remaining) = %v, want %v", tt.remaining, got, tt.want)
		}
	}
}

func TestRefusesCertificateForAnotherKey(t *testing.T) {
	svc, anchors := newService(t, time.Hour)
	m := newManager(t, svc, anchors)
	other := newManager(t, svc, anchors)
	resp, err := svc.Certify(context.Background(), &identityv1.CertifyRequest{Identity: webID, Token: []byte("web-token-0123456789abcdef"), CertificateSigningRequest: other.csr})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.assemble(resp); err == nil || !strings.Contains(err.Error(), "not for this proxy's key") {
		t.Errorf("assemble = %v, want a refusal", err)
	}
	foreignRoot, _ := pki.NewRoot("root", time.Now().Add(-time.Hour), time.Hour)
	foreignAnchors, _, _ := pki.AnchorPool(foreignRoot.CertPEM)
	stranger := newManager(t, svc, foreignAnchors)
	if _, err := stranger.Renew(context.Background()); err == nil || !strings.Contains(err.Error(), "trust anchors") {
		t.Errorf("Renew against foreign anchors = %v, want a verification failure", err)
	}
}

// BenchmarkHandshakeMTLS is the cost of one proxy-to-proxy connection:
// TCP connect plus a TLS 1.3 handshake with certificates on both sides.
// Compare with BenchmarkConnectPlaintext.
func BenchmarkHandshakeMTLS(b *testing.B) {
	svc, anchors := newService(b, time.Hour)
	client, server := newManager(b, svc, anchors), newManager(b, svc, anchors)
	for _, m := range []*Manager{client, server} {
		if _, err := m.Renew(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	benchConnect(b, server.ServerConfig(), client.ClientConfig(webID))
}

func BenchmarkConnectPlaintext(b *testing.B) { benchConnect(b, nil, nil) }

func benchConnect(b *testing.B, serverCfg, clientCfg *tls.Config) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if serverCfg != nil {
					c = tls.Server(c, serverCfg)
				}
				c.Write([]byte{1})
				io.Copy(io.Discard, c)
			}()
		}
	}()
	buf := make([]byte, 1)
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if clientCfg != nil {
			c = tls.Client(c, clientCfg)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
