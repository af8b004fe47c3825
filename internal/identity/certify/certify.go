// Package certify is the proxy's side of identity: it generates the proxy's
// private key (ECDSA P-256, kept in memory), obtains a certificate for it
// through the Certify RPC, renews it before it expires, and builds the TLS
// configurations used for mTLS between proxies.
package certify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
)

// Config configures a Manager.
type Config struct {
	// Identity is the DNS identity to request.
	Identity string
	// TokenPath is re-read before every request (projected tokens rotate).
	TokenPath string
	// Token is used when TokenPath is empty (static tokens, tests).
	Token []byte
	// Client reaches the identity service.
	Client identityv1.IdentityClient
	// Anchors verify the returned chain and every peer.
	Anchors *x509.CertPool
	// MinRefresh and MaxRefresh bound the renewal delay (defaults 10s, 24h).
	MinRefresh, MaxRefresh time.Duration
	Log                    *slog.Logger
}

// Manager holds the proxy's key and current certificate.
type Manager struct {
	cfg     Config
	key     *ecdsa.PrivateKey
	csr     []byte
	cert    atomic.Pointer[tls.Certificate]
	mesh    atomic.Pointer[meshTLS] // the current certificate's mesh configurations and sessions
	ready   chan struct{}
	expiry  prometheus.Gauge
	refresh prometheus.Counter
	// handshakes counts mesh mTLS handshakes by side and resumption.
	handshakes *prometheus.CounterVec
}

// New generates the key and CSR. It does not contact the identity service.
func New(cfg Config) (*Manager, error) {
	if cfg.Identity == "" || cfg.Client == nil || cfg.Anchors == nil {
		return nil, errors.New("certify: identity, client and trust anchors are required")
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = 10 * time.Second
	}
	if cfg.MaxRefresh <= 0 {
		cfg.MaxRefresh = 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certify: generating key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cfg.Identity}, DNSNames: []string{cfg.Identity},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certify: CSR: %w", err)
	}
	return &Manager{
		cfg: cfg, key: key, csr: csr, ready: make(chan struct{}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "identity_cert_expiration_timestamp_seconds",
			Help: "Time when this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch)."}),
		refresh: prometheus.NewCounter(prometheus.CounterOpts{Name: "identity_cert_refresh_count",
			Help: "The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity service."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "identity_mesh_tls_handshakes_total",
			Help: "mTLS handshakes with other proxies whose peer chain was verified, by side (server: inbound, client: outbound) and whether the session was resumed."},
			[]string{"side", "resumed"}),
	}, nil
}

// Collectors are the identity metrics, for the proxy's registry.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.expiry, m.refresh, m.handshakes}
}

// Ready is closed once the first certificate is held.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Identity is the name this proxy is certified as.
func (m *Manager) Identity() string { return m.cfg.Identity }

// Certificate returns the current certificate, or nil before the first one.
func (m *Manager) Certificate() *tls.Certificate { return m.cert.Load() }

// Run obtains and renews the certificate until ctx ends: renewal at 70% of
// the remaining lifetime within [MinRefresh, MaxRefresh], jittered
// exponential backoff after a failure.
func (m *Manager) Run(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		notAfter, err := m.Renew(ctx)
		var wait time.Duration
		if err != nil {
			backoff = min(max(backoff*2, 500*time.Millisecond), time.Minute)
			wait = backoff/2 + mrand.N(backoff/2+1)
			m.cfg.Log.Warn("identity certificate request failed", "identity", m.cfg.Identity, "err", err, "retry_in", wait)
		} else {
			backoff = 0
			wait = renewDelay(notAfter, time.Now(), m.cfg.MinRefresh, m.cfg.MaxRefresh)
			m.cfg.Log.Info("identity certificate obtained", "identity", m.cfg.Identity, "valid_until", notAfter, "renew_in", wait.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// renewDelay is 70% of the remaining lifetime, within [lo, hi].
func renewDelay(notAfter, now time.Time, lo, hi time.Duration) time.Duration {
	return min(max(notAfter.Sub(now)*7/10, lo), hi)
}

// Renew requests one certificate and installs it after verifying it.
func (m *Manager) Renew(ctx context.Context) (time.Time, error) {
	token := m.cfg.Token
	if m.cfg.TokenPath != "" {
		b, err := os.ReadFile(m.cfg.TokenPath)
		if err != nil {
			return time.Time{}, fmt.Errorf("reading token: %w", err)
		}
		token = b
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := m.cfg.Client.Certify(ctx, &identityv1.CertifyRequest{
		Identity: m.cfg.Identity, Token: token, CertificateSigningRequest: m.csr,
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("certify: %w", err)
	}
	cert, leaf, err := m.assemble(resp)
	if err != nil {
		return time.Time{}, err
	}
	mesh, err := newMeshTLS(cert, m.handshakes)
	if err != nil {
		return time.Time{}, err
	}
	first := m.cert.Swap(cert) == nil
	m.mesh.Store(mesh)
	m.expiry.Set(float64(leaf.NotAfter.Unix()))
	m.refresh.Inc()
	if first {
		close(m.ready)
	}
	return leaf.NotAfter, nil
}

func (m *Manager) assemble(resp *identityv1.CertifyResponse) (*tls.Certificate, *x509.Certificate, error) {
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		return nil, nil, fmt.Errorf("parsing issued certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&m.key.PublicKey) {
		return nil, nil, errors.New("issued certificate is not for this proxy's key")
	}
	chain := [][]byte{leaf.Raw}
	inter := x509.NewCertPool()
	for _, der := range resp.GetIntermediateCertificates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing intermediate: %w", err)
		}
		inter.AddCert(c)
		chain = append(chain, der)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.cfg.Anchors, Intermediates: inter, DNSName: m.cfg.Identity,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, nil, fmt.Errorf("issued certificate does not verify against the trust anchors: %w", err)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: m.key, Leaf: leaf}, leaf, nil
}

// ALPN protocol for the proxy-to-proxy HTTP/2 transport.
const (
	ALPNTransport = "h2"
)

// ServerConfig is the inbound mTLS configuration: TLS 1.3, a client
// certificate required and verified against the anchors.
func (m *Manager) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := m.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no identity certificate yet")
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  m.cfg.Anchors,
		NextProtos: []string{ALPNTransport, "http/1.1"},
	}
}

// ClientConfig is the outbound mTLS configuration toward a peer that must
// present serverID.
func (m *Manager) ClientConfig(serverID string, alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverID,
		RootCAs:    m.cfg.Anchors,
		NextProtos: alpn,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := m.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no identity certificate yet")
		},
	}
}

// PeerIdentity returns the verified DNS identity of a TLS peer.
func PeerIdentity(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	if names := cs.VerifiedChains[0][0].DNSNames; len(names) > 0 {
		return names[0]
	}
	return ""
}
