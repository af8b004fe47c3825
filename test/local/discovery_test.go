package local

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/identity/pki"
)

// TestBinariesWithDiscovery runs both controllers (identity with static
// tokens, destination with a registry file) and two proxies. The client
// proxy is told nothing about the service but its name: endpoints and the
// server's identity come from the destination service.
func TestBinariesWithDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	bin := build(t, "./cmd/weft-proxy", "./cmd/weft-controller")
	dir := t.TempDir()
	now := time.Now()
	root, _ := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	iss, _ := pki.NewIssuer(root, "identity.linkerd.cluster.local", now.Add(-time.Minute), 12*time.Hour)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("tokens", []byte("web-token-aaaaaaaaaaaaaaaa shop/web\napi-token-bbbbbbbbbbbbbbbb shop/api\n"))
	idAddr, idAdmin := freeAddr(t), freeAddr(t)
	start(t, "identity", nil, bin+"/weft-controller", "identity", "--addr", idAddr, "--admin-addr", idAdmin,
		"--identity-trust-anchors-file", write("ca.crt", root.CertPEM), "--static-tokens", dir+"/tokens",
		"--issuer-cert", write("issuer.crt", iss.CertPEM), "--issuer-key", write("issuer.key", iss.KeyPEM))

	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello %s", r.Header.Get("l5d-client-id"))
	})}
	appL, _ := net.Listen("tcp", "127.0.0.1:0")
	go app.Serve(appL)
	t.Cleanup(func() { app.Close() })

	apiID := "api.shop.serviceaccount.identity.linkerd.cluster.local"
	bAdmin, bIn := freeAddr(t), freeAddr(t)
	registry := write("registry.yaml", []byte(fmt.Sprintf(`services:
- name: api.shop.svc.cluster.local:80
  labels: {dst_namespace: shop, dst_service: api}
  endpoints:
  - {addr: %q, meshed: true, identity: %s}
`, bIn, apiID)))
	dstAddr, dstAdmin := freeAddr(t), freeAddr(t)
	start(t, "destination", nil, bin+"/weft-controller", "destination", "--registry", registry, "--addr", dstAddr, "--admin-addr", dstAdmin)
	waitReady(t, "http://"+idAdmin+"/ready")
	waitReady(t, "http://"+dstAdmin+"/ready")

	idEnv := func(name string) []string {
		tok := write(name+".token", []byte(map[string]string{"web": "web-token-aaaaaaaaaaaaaaaa", "api": "api-token-bbbbbbbbbbbbbbbb"}[name]))
		return []string{
			"LINKERD2_PROXY_IDENTITY_LOCAL_NAME=" + name + ".shop.serviceaccount.identity.linkerd.cluster.local",
			"LINKERD2_PROXY_IDENTITY_SVC_ADDR=" + idAddr,
			"LINKERD2_PROXY_IDENTITY_SVC_NAME=linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local",
			"LINKERD2_PROXY_IDENTITY_TOKEN_FILE=" + tok,
			"LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS=" + string(root.CertPEM),
			"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + dstAddr,
		}
	}
	start(t, "proxy-api", idEnv("api"), bin+"/weft-proxy", "--admin-addr", bAdmin, "--control-addr", freeAddr(t),
		"--outbound-addr", freeAddr(t), "--inbound-addr", bIn, "--inbound-forward", appL.Addr().String())
	aAdmin, aBind := freeAddr(t), freeAddr(t)
	start(t, "proxy-web", idEnv("web"), bin+"/weft-proxy", "--admin-addr", aAdmin, "--control-addr", freeAddr(t),
		"--outbound-addr", freeAddr(t), "--inbound-addr", freeAddr(t), "--bind", aBind+"=api.shop.svc.cluster.local:80")
	waitReady(t, "http://"+bAdmin+"/ready")
	waitReady(t, "http://"+aAdmin+"/ready")
	checkMTLS(t, aBind, aAdmin, bAdmin, apiID, now)
}
