// Package taptest runs what tap tests need on loopback: a real identity
// service (local CA, static tokens) handing out certificates, and meshed
// proxies serving tap to the tap server's identity.
package taptest

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/identitytest"
	"github.com/weftmesh/weft/internal/proxy"
)

// Identities the mesh can certify.
var (
	WebID   = id("web", "shop")
	APIID   = id("api", "shop")
	TapID   = fmt.Sprintf(compat.VizTapIdentityFormat, compat.VizNamespace, compat.DefaultControlPlaneNamespace, compat.DefaultIdentityTrustDomain)
	OtherID = id("intruder", "shop")
	// VizNSTapID is the tap server's identity when viz is installed in
	// namespace weft-viz.
	VizNSTapID = fmt.Sprintf(compat.VizTapIdentityFormat, "weft-viz", compat.DefaultControlPlaneNamespace, compat.DefaultIdentityTrustDomain)
)

func id(sa, ns string) string {
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, ns, compat.DefaultControlPlaneNamespace, compat.DefaultIdentityTrustDomain)
}

// Mesh is a real identity service (local CA, static tokens) on loopback.
type Mesh struct {
	anchors *x509.CertPool
	client  identityv1.IdentityClient
}

// tokens: identity → "token namespace/serviceaccount" (statictoken lines).
var tokens = map[string]string{
	WebID:      "web-token-0123456789abcdef shop/web",
	APIID:      "api-token-0123456789abcdef shop/api",
	TapID:      "tap-token-0123456789abcdef " + compat.VizNamespace + "/" + compat.VizTapName,
	OtherID:    "intruder-token-0123456789ab shop/intruder",
	VizNSTapID: "viztap-token-0123456789abcd weft-viz/" + compat.VizTapName,
}

// NewMesh starts the identity service.
func NewMesh(t testing.TB) *Mesh {
	t.Helper()
	sas := map[string]string{} // token → namespace/serviceaccount
	for _, l := range tokens {
		token, sa, _ := strings.Cut(l, " ")
		sas[token] = sa
	}
	ca := identitytest.NewCA(t, 0, sas)
	return &Mesh{anchors: ca.Anchors, client: identitytest.Serve(t, ca.Service)}
}

// Identity obtains name's certificate from the identity service with its token.
func (m *Mesh) Identity(t testing.TB, name string) *certify.Manager {
	t.Helper()
	return identitytest.Certified(t, m.client, m.anchors, name, strings.Fields(tokens[name])[0])
}

// Proxy is a running proxy and its addresses.
type Proxy struct {
	*proxy.Proxy
	Admin, Control, Outbound, Inbound string
	Bindings                          []string
}

// StartProxy runs a meshed proxy on loopback that serves tap to TapID.
func StartProxy(t testing.TB, id *certify.Manager, mutate func(*proxy.Config), bindDsts ...string) *Proxy {
	t.Helper()
	cfg := proxy.DefaultConfig()
	cfg.OutboundAddr, cfg.InboundAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.AdminAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownGrace = 2 * time.Second
	cfg.TapSvcName = TapID
	for _, d := range bindDsts {
		cfg.Bindings = append(cfg.Bindings, proxy.Binding{Listen: "127.0.0.1:0", Dst: d})
	}
	if mutate != nil {
		mutate(&cfg)
	}
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	p, err := proxy.New(cfg, proxy.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), Level: level, Identity: id})
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
	deadline := time.Now().Add(5 * time.Second)
	for !p.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	a := p.Addrs()
	tp := &Proxy{Proxy: p, Admin: a[0].String(), Control: a[1].String(), Outbound: a[2].String(), Inbound: a[3].String()}
	for _, b := range a[4:] {
		tp.Bindings = append(tp.Bindings, b.String())
	}
	return tp
}

// Backend answers every request with body.
func Backend(t testing.TB, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Answer", "secret-answer-value")
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}
