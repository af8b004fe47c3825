// Package selfcert gives a control-plane process (the destination and
// policy controllers, and any other controller proxies reach) its own
// mesh identity: it obtains a certificate from the identity service the
// way a proxy does (certify.Manager, the pod's projected ServiceAccount
// token), keeps it renewed, and serves with it: TLS 1.3, the certificate
// read on every handshake (rotation without restart), and a client
// certificate required and verified against the trust anchors.
package selfcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/pki"
)

// Config says who this process is and how it reaches the identity service.
type Config struct {
	// Identity is the DNS identity to request; it must be the one the
	// token maps to (<sa>.<ns>.serviceaccount.identity.<ctl-ns>.<domain>).
	Identity string
	// IdentityAddr is the identity service (host:port), reached over TLS.
	IdentityAddr string
	// IdentityName is the identity the identity service must present.
	IdentityName string
	// TokenFile is re-read before every request (projected tokens
	// rotate); Token is used when it is empty (static tokens, tests).
	TokenFile string
	Token     []byte
	// AnchorsPEM are the trust anchors: they verify the identity service,
	// the issued certificate and every client.
	AnchorsPEM []byte
	// MinRefresh bounds how soon a certificate is renewed (certify's
	// default 10 s when zero; tests use less).
	MinRefresh time.Duration
	Log        *slog.Logger
}

// Source holds this process's certificate.
type Source struct {
	mgr     *certify.Manager
	conn    *grpc.ClientConn
	anchors *x509.CertPool
}

// New prepares the key and the connection to the identity service; Run
// obtains and renews the certificate.
func New(c Config) (*Source, error) {
	if c.Identity == "" || c.IdentityAddr == "" || c.IdentityName == "" {
		return nil, errors.New("selfcert: identity, identity service address and identity service name are required")
	}
	if c.TokenFile == "" && len(c.Token) == 0 {
		return nil, errors.New("selfcert: a token file is required")
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	anchors, _, err := pki.AnchorPool(c.AnchorsPEM)
	if err != nil {
		return nil, fmt.Errorf("selfcert: trust anchors: %w", err)
	}
	creds := credentials.NewTLS(&tls.Config{ServerName: c.IdentityName, RootCAs: anchors, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient(c.IdentityAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("selfcert: identity service %s: %w", c.IdentityAddr, err)
	}
	mgr, err := certify.New(certify.Config{Identity: c.Identity, TokenPath: c.TokenFile, Token: c.Token,
		Client: identityv1.NewIdentityClient(conn), Anchors: anchors, MinRefresh: c.MinRefresh, Log: c.Log})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("selfcert: %w", err)
	}
	return &Source{mgr: mgr, conn: conn, anchors: anchors}, nil
}

// Run obtains the certificate, retrying with backoff until the identity
// service answers (it may start after this process), then renews it at
// 70% of its lifetime, until ctx ends.
func (s *Source) Run(ctx context.Context) {
	defer s.conn.Close()
	s.mgr.Run(ctx)
}

// Ready is closed once the first certificate is held.
func (s *Source) Ready() <-chan struct{} { return s.mgr.Ready() }

// HasCertificate reports whether a certificate is held (for /ready).
func (s *Source) HasCertificate() bool { return s.mgr.Certificate() != nil }

// Certificate is the current certificate, or nil before the first one.
func (s *Source) Certificate() *tls.Certificate { return s.mgr.Certificate() }

// Identity is the name this process is certified as.
func (s *Source) Identity() string { return s.mgr.Identity() }

// Collectors are the certificate's expiry and refresh metrics
// (identity_cert_expiration_timestamp_seconds, identity_cert_refresh_count).
func (s *Source) Collectors() []prometheus.Collector { return s.mgr.Collectors() }

// ServerTLS is the serving configuration: TLS 1.3, the current certificate
// on every handshake (none before the first: the handshake fails and the
// client retries), a client certificate required and verified against the
// trust anchors. ALPN h2 and http/1.1.
func (s *Source) ServerTLS() *tls.Config { return s.mgr.ServerConfig() }

// ServerCredentials are ServerTLS for grpc.Creds.
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerTLS())
}

// ClientConfig is the configuration for dialing a peer that must present
// serverID (another controller, or a proxy's tap or admin server) with
// this process's certificate as the client's: TLS 1.3, the peer verified
// against the trust anchors.
func (s *Source) ClientConfig(serverID string, alpn ...string) *tls.Config {
	return s.mgr.ClientConfig(serverID, alpn...)
}

// PeerIdentity is the verified identity of the client of a gRPC call
// served with ServerCredentials, or "" (plaintext, or no peer).
func PeerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	return certify.PeerIdentity(info.State)
}
