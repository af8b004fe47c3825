package identity

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
	"sync"
	"time"
)

// ServingTLS returns a TLS configuration whose certificate the service signs
// for itself as name with its current issuer. The certificate is reissued
// when the issuer changes or 70% of its lifetime has passed, so proxies can
// verify the identity service against the trust anchors.
func (s *Service) ServingTLS(name Name) *tls.Config {
	c := &servingCert{svc: s, name: name}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.get() },
	}
}

type servingCert struct {
	svc  *Service
	name Name

	mu      sync.Mutex
	cert    *tls.Certificate
	issuer  Issuer
	renewAt time.Time
}

func (c *servingCert) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	iss := c.svc.Issuer()
	if iss == nil {
		return nil, errors.New("identity: no issuer loaded yet")
	}
	if c.cert != nil && iss == c.issuer && time.Now().Before(c.renewAt) {
		return c.cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: c.name.DNSName()}}, key)
	if err != nil {
		return nil, fmt.Errorf("serving CSR: %w", err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	leaf, err := iss.Issue(context.Background(), csr, c.name, c.svc.lifetime)
	if err != nil {
		return nil, fmt.Errorf("issuing the serving certificate: %w", err)
	}
	chain := [][]byte{leaf.Certificate.Raw}
	for _, ic := range leaf.Intermediates {
		chain = append(chain, ic.Raw)
	}
	life := leaf.Certificate.NotAfter.Sub(time.Now())
	c.cert = &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf.Certificate}
	c.issuer, c.renewAt = iss, time.Now().Add(life*7/10)
	return c.cert, nil
}
