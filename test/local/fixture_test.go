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

const apiID = "api.shop.serviceaccount.identity.linkerd.cluster.local"

var tokens = map[string]string{"web": "web-token-aaaaaaaaaaaaaaaa", "api": "api-token-bbbbbbbbbbbbbbbb",
	"linkerd-destination": "dst-token-cccccccccccccccc"}

// mesh is what every binary test starts with: built binaries, a trust
// anchor and issuer, the identity controller in static-token mode, and an
// application that echoes the client identity it was given.
type mesh struct {
	bin, dir string
	now      time.Time
	rootPEM  []byte
	idAddr   string
	app      string // the application's address
}

func newMesh(t *testing.T) *mesh {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	m := &mesh{bin: build(t, "./cmd/weft-proxy", "./cmd/weft-controller"), dir: t.TempDir(), now: time.Now()}
	root, err := pki.NewRoot("root.linkerd.cluster.local", m.now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := pki.NewIssuer(root, "identity.linkerd.cluster.local", m.now.Add(-time.Minute), 12*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m.rootPEM = root.CertPEM
	m.write(t, "tokens", fmt.Sprintf("%s shop/web\n%s shop/api\n%s linkerd/linkerd-destination\n", tokens["web"], tokens["api"], tokens["linkerd-destination"]))
	anchors, crt, key := m.write(t, "ca.crt", string(root.CertPEM)), m.write(t, "issuer.crt", string(iss.CertPEM)), m.write(t, "issuer.key", string(iss.KeyPEM))
	startReady(t, "identity", func() ([]string, string) {
		m.idAddr = freeAddr(t)
		idAdmin := freeAddr(t)
		return []string{m.bin + "/weft-controller", "identity", "--addr", m.idAddr, "--admin-addr", idAdmin,
			"--identity-trust-anchors-file", anchors, "--static-tokens", m.dir + "/tokens", "--issuer-cert", crt, "--issuer-key", key}, "http://" + idAdmin + "/ready"
	})

	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello %s", r.Header.Get("l5d-client-id"))
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Serve(l)
	t.Cleanup(func() { app.Close() })
	m.app = l.Addr().String()
	return m
}

// startReady starts a controller on ports chosen by freeAddr and waits for
// its /ready; a port taken in the meantime by another process (freeAddr
// closes its listener) makes it start again on new ports, up to 3 times.
func startReady(t *testing.T, name string, argsAndReady func() (args []string, readyURL string)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		args, url := argsAndReady()
		start(t, name, nil, args[0], args[1:]...)
		if attempt == 3 {
			waitReady(t, url)
			return
		}
		if readyWithin(url, 10*time.Second) {
			return
		}
	}
}

func (m *mesh) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(m.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// proxyEnv is the identity environment of the proxy for service account sa.
func (m *mesh) proxyEnv(t *testing.T, sa string) []string {
	return []string{
		"LINKERD2_PROXY_IDENTITY_LOCAL_NAME=" + sa + ".shop.serviceaccount.identity.linkerd.cluster.local",
		"LINKERD2_PROXY_IDENTITY_SVC_ADDR=" + m.idAddr,
		"LINKERD2_PROXY_IDENTITY_SVC_NAME=linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local",
		"LINKERD2_PROXY_IDENTITY_TOKEN_FILE=" + m.write(t, sa+".token", tokens[sa]),
		"LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS=" + string(m.rootPEM),
	}
}

// startProxy runs a weft-proxy with its own loopback ports; it returns the
// admin address and the inbound address.
func (m *mesh) startProxy(t *testing.T, sa string, extraEnv []string, args ...string) (admin, inbound string) {
	t.Helper()
	admin, inbound = freeAddr(t), freeAddr(t)
	start(t, "proxy-"+sa, append(m.proxyEnv(t, sa), extraEnv...), m.bin+"/weft-proxy", append([]string{
		"--admin-addr", admin, "--control-addr", freeAddr(t), "--outbound-addr", freeAddr(t), "--inbound-addr", inbound}, args...)...)
	return admin, inbound
}
