package controller

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/controlclient"
	"github.com/weftmesh/weft/internal/identity/identitytest"
	idkube "github.com/weftmesh/weft/internal/identity/kube"
	"github.com/weftmesh/weft/internal/kubetest"
)

// TestRunPolicy runs `weft-controller policy` against a real API server
// (no route CRDs: Services only) in mTLS mode with a real identity
// service: ready, streaming a Service's table to the proxy's own dial code,
// its metrics on the admin port, and stopping when asked.
func TestRunPolicy(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	ctx := context.Background()
	if _, err := a.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Tokens as the chart's projected volumes hold them (TokenRequest,
	// audience identity.l5d.io), checked by the identity service with
	// TokenReview against the same API server.
	token := func(ns, sa string) string {
		t.Helper()
		if _, err := a.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if _, err := a.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := a.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{compat.AudienceIdentity}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	ca := identitytest.NewCA(t, time.Hour, controlTokens) // validator replaced below
	ca.Service.SetValidator(idkube.NewTokenReviewer(a.Client, "linkerd", "cluster.local"))
	ca.Serve(t, "127.0.0.1:0")
	bound := make(chan [2]string, 1)
	run := PolicyOptions{Kubeconfig: a.Kubeconfig, ClusterDomain: "cluster.local", ControllerNS: "linkerd", Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		TrustDomain: "cluster.local", Bound: func(addr, adminAddr string) { bound <- [2]string{addr, adminAddr} },
		TLS: ServingIdentity{IdentityAddr: ca.Addr, TokenFile: writeFile(t, "token", token("linkerd", "linkerd-destination")),
			AnchorsFile: writeFile(t, "ca.crt", string(ca.AnchorsPEM))}}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- RunPolicy(runCtx, run, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	var o PolicyOptions
	select {
	case addrs := <-bound:
		o.Addr, o.AdminAddr = addrs[0], addrs[1]
	case err := <-done:
		t.Fatalf("RunPolicy: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("RunPolicy never bound its listeners")
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + o.AdminAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := get("/ready"); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("policy never ready")
		}
	}
	conn, err := controlclient.Dial(o.Addr, testDstID, identitytest.Certified(t, ca.Client(t), ca.Anchors, webID, token("shop", "web")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	s, err := policyv1.NewOutboundPoliciesClient(conn).Watch(wctx, &policyv1.OutboundRequest{Target: "web.shop.svc.cluster.local:80"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !m.GetFound() || m.GetParent().GetAuthority() != "web.shop.svc.cluster.local:80" {
		t.Errorf("first message = %v, want the Service's table", m)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "policy_outbound_watches 1") || !strings.Contains(body, "identity_cert_refresh_count 1") {
		t.Errorf("metrics do not count the stream or the certificate:\n%s", body)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunPolicy: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RunPolicy did not stop")
	}
}
