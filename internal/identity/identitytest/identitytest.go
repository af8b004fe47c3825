// Package identitytest serves an identity service over gRPC on loopback
// for tests: a given service in plaintext with a client of it (Serve), or
// a whole CA served over TLS as the control plane's (StartCA); and a
// proxy's certificate from it (Certified).
package identitytest

import (
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/identity/statictoken"
)

// Serve serves svc on a loopback port until the test ends and returns a
// client connected to it.
func Serve(t testing.TB, svc identityv1.IdentityServer) identityv1.IdentityClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	identityv1.RegisterIdentityServer(srv, svc)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return identityv1.NewIdentityClient(conn)
}

// CA is a trust root with an identity service issuing under it, served
// over TLS on loopback as the control plane's identity service is: its
// own certificate names Name and chains to the root.
type CA struct {
	Root       *pki.Pair
	AnchorsPEM []byte
	Anchors    *x509.CertPool
	Service    *identity.Service
	// Addr is the identity service (TLS); Name the identity it presents.
	Addr string
	Name string
	self identity.Name
}

// StartCA is NewCA served on a free loopback port.
func StartCA(t testing.TB, lifetime time.Duration, tokens map[string]string) *CA {
	t.Helper()
	ca := NewCA(t, lifetime, tokens)
	ca.Serve(t, "127.0.0.1:0")
	return ca
}

// NewCA makes a root and an issuer, and an identity service that
// certifies the tokens of tokens (token → "namespace/serviceaccount") for
// lifetime (control plane namespace linkerd, trust domain cluster.local).
// Serve serves it.
func NewCA(t testing.TB, lifetime time.Duration, tokens map[string]string) *CA {
	t.Helper()
	root, err := pki.NewRoot("root.test", time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors, _, err := pki.AnchorPool(root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.NewIssuer(root, "issuer.test", time.Now().Add(-time.Minute), 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := localca.New(iss.CertPEM, iss.KeyPEM, anchors, localca.Options{ClockSkewAllowance: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for token, sa := range tokens {
		fmt.Fprintf(&lines, "%s %s\n", token, sa)
	}
	v, err := statictoken.Parse(strings.NewReader(lines.String()), compat.DefaultControlPlaneNamespace, compat.DefaultIdentityTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	svc := identity.NewService(identity.ServiceConfig{Validator: v, Issuer: ca, Lifetime: lifetime,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	self := identity.Name{ServiceAccount: compat.IdentityComponent, Namespace: compat.DefaultControlPlaneNamespace,
		ControlPlaneNS: compat.DefaultControlPlaneNamespace, TrustDomain: compat.DefaultIdentityTrustDomain}
	return &CA{Root: root, AnchorsPEM: root.CertPEM, Anchors: anchors, Service: svc, Name: self.DNSName(), self: self}
}

// Serve serves the identity service over TLS on addr until the test ends
// and sets Addr.
func (ca *CA) Serve(t testing.TB, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ca.ServeListener(t, l)
}

// ServeListener is Serve on a listener the test has.
func (ca *CA) ServeListener(t testing.TB, l net.Listener) {
	t.Helper()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.Service.ServingTLS(ca.self))))
	identityv1.RegisterIdentityServer(srv, ca.Service)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	ca.Addr = l.Addr().String()
}

// Client is a client of the identity service as proxies reach it (TLS,
// the service's identity verified against the root).
func (ca *CA) Client(t testing.TB) identityv1.IdentityClient {
	t.Helper()
	conn, err := grpc.NewClient(ca.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		ServerName: ca.Name, RootCAs: ca.Anchors, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return identityv1.NewIdentityClient(conn)
}

// Certified runs a certificate manager for identity name, with token,
// against the identity service client (certificates chained to anchors),
// as a proxy does, and waits up to 10 s for its first certificate. It
// stops when the test ends.
func Certified(t testing.TB, client identityv1.IdentityClient, anchors *x509.CertPool, name, token string) *certify.Manager {
	t.Helper()
	m, err := certify.New(certify.Config{Identity: name, Token: []byte(token), Client: client, Anchors: anchors,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go m.Run(ctx)
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("no certificate for %s", name)
	}
	return m
}
