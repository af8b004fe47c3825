package kube_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/identitytest"
	"github.com/weftmesh/weft/internal/identity/kube"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/proxy"
)

const webID = "web.shop.serviceaccount.identity.linkerd.cluster.local"

type cluster struct {
	api    *kubetest.APIServer
	root   *pki.Pair
	svc    *identity.Service
	client identityv1.IdentityClient
}

func issuerSecret(p *pki.Pair, root *pki.Pair) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kube.IssuerSecretName, Namespace: "linkerd"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": p.CertPEM, "tls.key": p.KeyPEM, "ca.crt": root.CertPEM},
	}
}

func setup(t *testing.T) *cluster {
	t.Helper()
	api := kubetest.StartAPIServer(t)
	ctx := context.Background()
	for _, ns := range []string{"linkerd", "shop"} {
		if _, err := api.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sa := range []string{"web", "api"} {
		if _, err := api.Client.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	root, _ := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	iss, _ := pki.NewIssuer(root, "issuer-1", now.Add(-time.Minute), 48*time.Hour)
	if _, err := api.Client.CoreV1().Secrets("linkerd").Create(ctx, issuerSecret(iss, root), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := identity.NewService(identity.ServiceConfig{Validator: kube.NewTokenReviewer(api.Client, "linkerd", "cluster.local"), Log: log})
	w := &kube.IssuerWatcher{Client: api.Client, Namespace: "linkerd", Scheme: kube.SchemeKubernetes, AnchorsPEM: root.CertPEM, Target: svc, Log: log}
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := w.Start(wctx); err != nil {
		t.Fatal(err)
	}
	client := identitytest.Serve(t, svc)
	return &cluster{api: api, root: root, svc: svc, client: client}
}

func (c *cluster) token(t *testing.T, sa, audience string) string {
	t.Helper()
	tr, err := c.api.Client.CoreV1().ServiceAccounts("shop").CreateToken(context.Background(), sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// signedToken signs, with the cluster's real ServiceAccount key, a token for
// shop/web; with expired, it expired an hour ago and only that is wrong.
func (c *cluster) signedToken(t *testing.T, expired bool) string {
	t.Helper()
	keyPEM, err := os.ReadFile(c.api.ServiceAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := localca.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := c.api.Client.CoreV1().ServiceAccounts("shop").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	past := time.Now().Add(-2 * time.Hour).Unix()
	if !expired {
		past = time.Now().Add(-time.Minute).Unix()
	}
	unsigned := enc(map[string]string{"alg": "ES256", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": c.api.Issuer, "sub": "system:serviceaccount:shop:web", "aud": []string{"identity.l5d.io"},
		"iat": past, "nbf": past, "exp": past + 3600,
		"kubernetes.io": map[string]any{"namespace": "shop", "serviceaccount": map[string]string{"name": "web", "uid": string(sa.UID)}},
	})
	digest := sha256.Sum256([]byte(unsigned))
	r, s, err := ecdsa.Sign(rand.Reader, signer.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func newCSR(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertifyWithRealTokens(t *testing.T) {
	c := setup(t)
	good := c.token(t, "web", kube.Audience)
	tests := []struct {
		name     string
		token    string
		identity string
		want     codes.Code
	}{
		{"projected token", good, webID, codes.OK},
		{"wrong audience", c.token(t, "web", "vault"), webID, codes.Unauthenticated},
		{"forged", good[:len(good)-8] + "AAAAAAAA", webID, codes.Unauthenticated},
		{"hand-signed control (proves the next case fails on expiry alone)", c.signedToken(t, false), webID, codes.OK},
		{"expired", c.signedToken(t, true), webID, codes.Unauthenticated},
		{"another identity", good, "api.shop.serviceaccount.identity.linkerd.cluster.local", codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.client.Certify(context.Background(), &identityv1.CertifyRequest{
				Identity: tt.identity, Token: []byte(tt.token), CertificateSigningRequest: newCSR(t, tt.identity),
			})
			if got := status.Code(err); got != tt.want {
				t.Errorf("Certify = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// TestIssuerRotationUnderLoad rotates the issuer Secret while two meshed
// proxies carry a steady stream of requests and renew their certificates.
func TestIssuerRotationUnderLoad(t *testing.T) {
	c := setup(t)
	anchors, _, _ := pki.AnchorPool(c.root.CertPEM)
	mgr := func(sa string) *certify.Manager {
		path := filepath.Join(t.TempDir(), "token")
		os.WriteFile(path, []byte(c.token(t, sa, kube.Audience)), 0o600)
		m, err := certify.New(certify.Config{Identity: sa + ".shop.serviceaccount.identity.linkerd.cluster.local",
			TokenPath: path, Client: c.client, Anchors: anchors, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Renew(context.Background()); err != nil {
			t.Fatalf("first certificate for %s: %v", sa, err)
		}
		return m
	}
	web, api := mgr("web"), mgr("api")
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("l5d-client-id")) })}
	bl, _ := net.Listen("tcp", "127.0.0.1:0")
	go backend.Serve(bl)
	t.Cleanup(func() { backend.Close() })
	server := startProxy(t, api, func(cfg *proxy.Config) { cfg.InboundForward = bl.Addr().String() })
	client := startProxy(t, web, func(cfg *proxy.Config) {
		cfg.Destinations = map[string][]proxy.EndpointSpec{"api.shop:80": {{Addr: server[3], Proxy: true, Identity: api.Identity()}}}
		cfg.Bindings = []proxy.Binding{{Listen: "127.0.0.1:0", Dst: "api.shop:80"}}
	})
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := &http.Client{Timeout: 5 * time.Second}
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := hc.Get("http://" + client[4] + "/")
			if err != nil {
				failed.Add(1)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == webID {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	next, _ := pki.NewIssuer(c.root, "issuer-2", time.Now().Add(-time.Minute), 48*time.Hour)
	if _, err := c.api.Client.CoreV1().Secrets("linkerd").Update(context.Background(), issuerSecret(next, c.root), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.svc.Issuer().(*localca.CA).Certificate().Subject.CommonName != "issuer-2" {
		if time.Now().After(deadline) {
			t.Fatal("issuer-2 not loaded within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range []*certify.Manager{web, api} {
		if _, err := m.Renew(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := m.Certificate().Leaf.Issuer.CommonName; got != "issuer-2" {
			t.Errorf("%s renewed under %q, want issuer-2", m.Identity(), got)
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	t.Logf("requests during rotation: %d ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() < 50 {
		t.Errorf("%d failed and %d ok requests across the rotation; want 0 failed", failed.Load(), ok.Load())
	}
}

func startProxy(t *testing.T, id *certify.Manager, mutate func(*proxy.Config)) []string {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.OutboundAddr, cfg.InboundAddr, cfg.AdminAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	mutate(&cfg)
	p, err := proxy.New(cfg, proxy.Options{Identity: id, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	var out []string
	for _, a := range p.Addrs() {
		out = append(out, a.String())
	}
	return out
}
