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
	"github.com/weftmesh/weft/internal/proctest"
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
	m := &mesh{bin: proctest.Build(t, "../..", "./cmd/weft-proxy", "./cmd/weft-controller"), dir: t.TempDir(), now: time.Now()}
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
	id := proctest.StartListening(t, "identity", nil, m.bin+"/weft-controller", "identity", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--identity-trust-anchors-file", anchors, "--static-tokens", m.dir+"/tokens", "--issuer-cert", crt, "--issuer-key", key)
	m.idAddr = id["identity gRPC server"]
	proctest.WaitReady(t, "http://"+id["identity admin server"]+"/ready", 20*time.Second)

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

// startProxy runs a weft-proxy on loopback ports of its own (port 0) and
// returns the addresses it reports ("admin", "inbound", "bind NAME"…).
func (m *mesh) startProxy(t *testing.T, sa string, extraEnv []string, args ...string) map[string]string {
	t.Helper()
	return proctest.StartListening(t, "proxy-"+sa, append(m.proxyEnv(t, sa), extraEnv...), m.bin+"/weft-proxy", append([]string{
		"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0"}, args...)...)
}
