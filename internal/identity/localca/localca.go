// Package localca is an identity.Issuer that signs with an issuer
// certificate and key it holds in memory, loaded from PEM (the
// linkerd-identity-issuer Secret, scheme linkerd.io/tls or kubernetes.io/tls).
package localca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/pki"
)

// CA signs leaf certificates with one issuer certificate.
type CA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	chain  []*x509.Certificate // issuer first, then its intermediates
	skew   time.Duration
	now    func() time.Time
	serial *big.Int // upper bound for random serials
}

var _ identity.Issuer = (*CA)(nil)
var _ identity.Expirer = (*CA)(nil)

// Options configure a CA.
type Options struct {
	// ClockSkewAllowance backdates NotBefore (identity.issuer.clockSkewAllowance, default 20s).
	ClockSkewAllowance time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// New loads an issuer from PEM: certPEM holds the issuer certificate first,
// optionally followed by intermediates; keyPEM its private key. The issuer
// must be a CA, unexpired, match its key and chain to one of anchors.
func New(certPEM, keyPEM []byte, anchors *x509.CertPool, o Options) (*CA, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ClockSkewAllowance == 0 {
		o.ClockSkewAllowance = 20 * time.Second
	}
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("issuer certificate: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	c := &CA{cert: certs[0], key: key, chain: certs, skew: o.ClockSkewAllowance, now: o.Now,
		serial: new(big.Int).Lsh(big.NewInt(1), 128)}
	if err := c.verify(anchors); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CA) verify(anchors *x509.CertPool) error {
	cert := c.cert
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("issuer certificate %q is not a CA (basicConstraints CA:true and keyUsage certSign required)", cert.Subject)
	}
	if !publicKeyMatches(cert.PublicKey, c.key.Public()) {
		return fmt.Errorf("issuer key does not match the issuer certificate %q", cert.Subject)
	}
	now := c.now()
	if now.After(cert.NotAfter) {
		return fmt.Errorf("issuer certificate %q expired at %s", cert.Subject, cert.NotAfter.Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("issuer certificate %q is not valid before %s", cert.Subject, cert.NotBefore.Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, ic := range c.chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("issuer certificate %q does not chain to a trust anchor: %w", cert.Subject, err)
	}
	return nil
}

// Expiry is the issuer certificate's NotAfter.
func (c *CA) Expiry() time.Time { return c.cert.NotAfter }

// Certificate is the issuer certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Issue signs csr's key for name. The leaf's lifetime is capped at the
// issuer's own expiry.
func (c *CA) Issue(_ context.Context, csr *x509.CertificateRequest, name identity.Name, lifetime time.Duration) (*identity.Leaf, error) {
	serial, err := rand.Int(rand.Reader, c.serial)
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	spiffe, err := url.Parse(name.SPIFFEID())
	if err != nil {
		return nil, fmt.Errorf("%w: SPIFFE ID: %v", identity.ErrInvalidRequest, err)
	}
	now := c.now()
	notAfter := now.Add(lifetime)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	if !now.Before(notAfter) {
		return nil, fmt.Errorf("%w: issuer certificate expired at %s", identity.ErrUnavailable, c.cert.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name.DNSName()},
		DNSNames:              []string{name.DNSName()},
		URIs:                  []*url.URL{spiffe},
		NotBefore:             now.Add(-c.skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("%w: signing: %v", identity.ErrInvalidRequest, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing signed certificate: %w", err)
	}
	return &identity.Leaf{Certificate: leaf, Intermediates: c.chain}, nil
}

// ParsePrivateKey parses a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA).
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", b.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return s, nil
}

func publicKeyMatches(a, b crypto.PublicKey) bool {
	switch k := a.(type) {
	case *ecdsa.PublicKey:
		return k.Equal(b)
	case *rsa.PublicKey:
		return k.Equal(b)
	case ed25519.PublicKey:
		return k.Equal(b)
	}
	return false
}
