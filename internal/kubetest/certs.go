package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway certificate authority for a test cluster; it writes
// PEM files into Dir.
type CA struct {
	Dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertPath is the CA certificate's file.
	CertPath string
}

// NewCA makes a CA valid for a week and writes Dir/ca.crt.
func NewCA(dir string) (*CA, error) {
	c := &CA{Dir: dir}
	cert, key, err := c.sign(&x509.Certificate{Subject: pkix.Name{CommonName: "weft-test-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature})
	if err != nil {
		return nil, fmt.Errorf("test CA: %w", err)
	}
	c.cert, c.key = cert, key
	if c.CertPath, _, err = write(dir, "ca", cert, key); err != nil {
		return nil, err
	}
	return c, nil
}

// PEM is the CA certificate in PEM.
func (c *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

// Issue writes Dir/name.crt and Dir/name.key for a server (with SANs) or,
// with no SANs, a client whose organizations become Kubernetes groups.
func (c *CA) Issue(name, cn string, orgs, dnsNames []string, ips []net.IP) (certPath, keyPath string, err error) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dnsNames, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if len(dnsNames)+len(ips) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	cert, key, err := c.sign(tmpl)
	if err != nil {
		return "", "", fmt.Errorf("certificate %s: %w", name, err)
	}
	return write(c.Dir, name, cert, key)
}

func (c *CA) sign(tmpl *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(7 * 24 * time.Hour)
	parent, parentKey := tmpl, key
	if c.cert != nil {
		parent, parentKey = c.cert, c.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func write(dir, name string, cert *x509.Certificate, key *ecdsa.PrivateKey) (certPath, keyPath string, err error) {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// WriteServiceAccountKey writes the key pair that signs ServiceAccount
// tokens: Dir/sa.key and Dir/sa.pub.
func WriteServiceAccountKey(dir string) (keyPath, pubPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	der, _ := x509.MarshalECPrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// apiserverPKI is what StartAPIServer needs.
type apiserverPKI struct {
	ca                                         *CA
	serverCert, serverKey, adminCert, adminKey string
	saKey, saPub                               string
	adminCertPEM, adminKeyPEM                  []byte
}

// writePKI makes the CA, the apiserver's serving certificate, an admin
// client certificate (system:masters) and the ServiceAccount key.
func writePKI(dir string) (*apiserverPKI, error) {
	ca, err := NewCA(dir)
	if err != nil {
		return nil, err
	}
	p := &apiserverPKI{ca: ca}
	if p.serverCert, p.serverKey, err = ca.Issue("apiserver", "kube-apiserver",
		nil, []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("198.19.0.1")}); err != nil {
		return nil, err
	}
	if p.adminCert, p.adminKey, err = ca.Issue("admin", "weft-test-admin", []string{"system:masters"}, nil, nil); err != nil {
		return nil, err
	}
	if p.saKey, p.saPub, err = WriteServiceAccountKey(dir); err != nil {
		return nil, err
	}
	p.adminCertPEM, _ = os.ReadFile(p.adminCert)
	p.adminKeyPEM, _ = os.ReadFile(p.adminKey)
	return p, nil
}
