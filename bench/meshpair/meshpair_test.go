package meshpair

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/promtext"
)

// TestProxiesTalkMTLS: two real weft-proxies with ProxyEnv's identities get
// certificates from the real identity service Start runs, and a request
// from one to the other crosses mTLS (the inbound proxy counts it with the
// client's identity).
func TestProxiesTalkMTLS(t *testing.T) {
	bin := proctest.Build(t, "../..", "./cmd/weft-controller", "./cmd/weft-proxy")
	client, server := Workload{"bench", "client"}, Workload{"bench", "server"}
	cp, err := Start(Options{Controller: bin + "/weft-controller", Dir: t.TempDir(),
		IdentityAddr: "127.0.0.1:0", IdentityAdmin: "127.0.0.1:0", Workloads: []Workload{client, server}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	if strings.HasSuffix(cp.IdentityAddr(), ":0") {
		t.Fatalf("IdentityAddr() = %s, want the bound port", cp.IdentityAddr())
	}

	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Serve(l)
	t.Cleanup(func() { app.Close() })

	serverEnv, err := cp.ProxyEnv(server)
	if err != nil {
		t.Fatal(err)
	}
	in := proctest.StartListening(t, "server-proxy", serverEnv, bin+"/weft-proxy", "--log-level", "warn",
		"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0",
		"--inbound-addr", "127.0.0.1:0", "--inbound-forward", l.Addr().String())
	clientEnv, err := cp.ProxyEnv(client)
	if err != nil {
		t.Fatal(err)
	}
	out := proctest.StartListening(t, "client-proxy", clientEnv, bin+"/weft-proxy", "--log-level", "warn",
		"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0",
		"--inbound-addr", "127.0.0.1:0", "--dst", "app:80=weft://"+server.Identity()+"@"+in["inbound"],
		"--bind", "127.0.0.1:0=app:80")
	proctest.WaitReady(t, "http://"+in["admin"]+"/ready", 30*time.Second)
	proctest.WaitReady(t, "http://"+out["admin"]+"/ready", 30*time.Second)

	const n = 5
	for i := range n {
		resp, err := http.Get("http://" + out["bind app:80"] + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello" {
			t.Fatalf("request %d: %d %q, want 200 hello", i, resp.StatusCode, body)
		}
	}
	resp, err := http.Get("http://" + in["admin"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got, err := promtext.Sum(string(metrics), "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+client.Identity()+`"`)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("server proxy's inbound request_total{tls=true, client_id=client} = %v, want %d", got, n)
	}

	if _, err := cp.ProxyEnv(Workload{"bench", "nobody"}); err == nil {
		t.Error("ProxyEnv of an unknown workload: no error")
	}
}

// TestServerCertVerifiesAgainstTrustAnchors: ServerCert's chain (what a
// ControlPlane's CA also signs) is accepted
// by a TLS client trusting only the generated anchor, for the names given.
func TestServerCertVerifiesAgainstTrustAnchors(t *testing.T) {
	cp, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := cp.ServerCert("haproxy-in", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.TrustAnchorsPEM())
	tests := []struct {
		serverName string
		wantErr    bool
	}{
		{"haproxy-in", false},
		{"127.0.0.1", false},
		{"someone-else", true},
	}
	for _, tt := range tests {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: tt.serverName})
		if c != nil {
			c.Close()
		}
		if got := err != nil; got != tt.wantErr {
			t.Errorf("handshake as %q: err = %v, want error %v", tt.serverName, err, tt.wantErr)
		}
	}
}
