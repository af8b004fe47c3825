package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/identitytest"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/identity/statictoken"
)

const (
	webToken = "token-for-web-0123456789"
	apiToken = "token-for-api-0123456789"
	webID    = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
)

type fixture struct {
	root    *pki.Pair
	anchors *x509.CertPool
	svc     *identity.Service
	client  identityv1.IdentityClient
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	now := time.Now()
	root, err := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	anchors, _, err := pki.AnchorPool(root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	ca := newIssuer(t, root, anchors, "identity.linkerd.cluster.local")
	v, err := statictoken.Parse(strings.NewReader(webToken+" emojivoto/web\n"+apiToken+" emojivoto/api\n"), "linkerd", "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	svc := identity.NewService(identity.ServiceConfig{Validator: v, Issuer: ca})
	client := identitytest.Serve(t, svc)
	return &fixture{root: root, anchors: anchors, svc: svc, client: client}
}

func newIssuer(t testing.TB, root *pki.Pair, anchors *x509.CertPool, cn string) *localca.CA {
	t.Helper()
	iss, err := pki.NewIssuer(root, cn, time.Now().Add(-time.Minute), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := localca.New(iss.CertPEM, iss.KeyPEM, anchors, localca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func csrFor(t testing.TB, names ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertifyIssuesLeafThatChainsToAnchor(t *testing.T) {
	f := newFixture(t)
	before := time.Now()
	resp, err := f.client.Certify(context.Background(), &identityv1.CertifyRequest{
		Identity: webID, Token: []byte(webToken), CertificateSigningRequest: csrFor(t, webID),
	})
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	leaf, err := x509.ParseCertificate(resp.LeafCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if got := leaf.DNSNames; len(got) != 1 || got[0] != webID {
		t.Errorf("DNS SANs = %v, want [%s]", got, webID)
	}
	if got := leaf.URIs; len(got) != 1 || got[0].String() != "spiffe://cluster.local/ns/emojivoto/sa/web" {
		t.Errorf("URI SANs = %v, want the SPIFFE ID", got)
	}
	if life := leaf.NotAfter.Sub(before); life < 24*time.Hour-time.Minute || life > 24*time.Hour+time.Minute {
		t.Errorf("lifetime %v, want 24h", life)
	}
	if skew := before.Sub(leaf.NotBefore); skew < 19*time.Second || skew > 25*time.Second {
		t.Errorf("NotBefore is %v before issuance, want the 20s clock-skew allowance", skew)
	}
	if !resp.ValidUntil.AsTime().Equal(leaf.NotAfter) {
		t.Errorf("valid_until %v != NotAfter %v", resp.ValidUntil.AsTime(), leaf.NotAfter)
	}
	inter := x509.NewCertPool()
	for _, der := range resp.IntermediateCertificates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: f.anchors, Intermediates: inter, DNSName: webID,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify to the anchor: %v", err)
	}
}

func TestCertifyRefusals(t *testing.T) {
	f := newFixture(t)
	apiID := strings.Replace(webID, "web.", "api.", 1)
	tests := []struct {
		name     string
		identity string
		token    string
		csr      []byte
		wantCode codes.Code
		wantMsg  string
	}{
		{"forged token", webID, "forged-token-0123456789", csrFor(t, webID), codes.Unauthenticated, "unknown static token"},
		{"no token", webID, "", csrFor(t, webID), codes.Unauthenticated, "no token"},
		{"another identity", apiID, webToken, csrFor(t, apiID), codes.PermissionDenied, "token is for emojivoto/web"},
		{"CSR for another name", webID, webToken, csrFor(t, apiID), codes.PermissionDenied, "CSR names"},
		{"garbage CSR", webID, webToken, []byte("not a csr"), codes.InvalidArgument, "parsing CSR"},
		{"foreign trust domain", "web.emojivoto.serviceaccount.identity.linkerd.example.org", webToken, csrFor(t, webID), codes.InvalidArgument, "is not under"},
		{"malformed name", "web..serviceaccount.identity.linkerd.cluster.local", webToken, csrFor(t, webID), codes.InvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.client.Certify(context.Background(), &identityv1.CertifyRequest{
				Identity: tt.identity, Token: []byte(tt.token), CertificateSigningRequest: tt.csr,
			})
			st, _ := status.FromError(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestIssuerRotation(t *testing.T) {
	f := newFixture(t)
	first := f.svc.Issuer().(*localca.CA).Certificate()
	next := newIssuer(t, f.root, f.anchors, "identity-next.linkerd.cluster.local")
	f.svc.SetIssuer(next)
	resp, err := f.client.Certify(context.Background(), &identityv1.CertifyRequest{
		Identity: webID, Token: []byte(webToken), CertificateSigningRequest: csrFor(t, webID),
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(resp.LeafCertificate)
	if leaf.Issuer.CommonName != "identity-next.linkerd.cluster.local" {
		t.Errorf("leaf issued by %q after rotation, want the new issuer (old was %q)", leaf.Issuer.CommonName, first.Subject.CommonName)
	}
}

func TestIssuerValidation(t *testing.T) {
	now := time.Now()
	root, _ := pki.NewRoot("root", now.Add(-time.Hour), 24*time.Hour)
	other, _ := pki.NewRoot("other root", now.Add(-time.Hour), 24*time.Hour)
	anchors, _, _ := pki.AnchorPool(root.CertPEM)
	good, _ := pki.NewIssuer(root, "issuer", now.Add(-time.Minute), time.Hour)
	foreign, _ := pki.NewIssuer(other, "foreign issuer", now.Add(-time.Minute), time.Hour)
	expired, _ := pki.NewIssuer(root, "expired issuer", now.Add(-3*time.Hour), time.Hour)
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{"good", good.CertPEM, good.KeyPEM, ""},
		{"foreign CA", foreign.CertPEM, foreign.KeyPEM, "does not chain to a trust anchor"},
		{"expired", expired.CertPEM, expired.KeyPEM, "expired"},
		{"key mismatch", good.CertPEM, foreign.KeyPEM, "does not match"},
		{"no certificate", []byte("junk"), good.KeyPEM, "no PEM CERTIFICATE"},
		{"no key", good.CertPEM, []byte("junk"), "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := localca.New(tt.cert, tt.key, anchors, localca.Options{})
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkIssue measures certificates signed per second (CSR check and
// signing; no RPC), reported as certs/s.
func BenchmarkIssue(b *testing.B) {
	root, _ := pki.NewRoot("root", time.Now().Add(-time.Hour), 24*time.Hour)
	anchors, _, _ := pki.AnchorPool(root.CertPEM)
	ca := newIssuer(b, root, anchors, "issuer")
	csrDER := csrFor(b, webID)
	name, _ := identity.ParseName(webID, "linkerd", "cluster.local")
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			b.Fatal(err)
		}
		if err := csr.CheckSignature(); err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Issue(context.Background(), csr, name, 24*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
}
