package proxy

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/identitytest"
	"github.com/weftmesh/weft/internal/poll"
)

const (
	webID = "web.shop.serviceaccount.identity.linkerd.cluster.local"
	apiID = "api.shop.serviceaccount.identity.linkerd.cluster.local"
)

// mesh is an in-process identity service with its own root.
type mesh struct {
	anchors *x509.CertPool
	client  identityv1.IdentityClient
	tokens  map[string]string // identity → token
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	tokens := map[string]string{webID: "web-token-0123456789abcdef", apiID: "api-token-0123456789abcdef"}
	ca := identitytest.NewCA(t, 0, map[string]string{tokens[webID]: "shop/web", tokens[apiID]: "shop/api"})
	return &mesh{anchors: ca.Anchors, client: identitytest.Serve(t, ca.Service), tokens: tokens}
}

// identity returns a certificate manager for name that has its first certificate.
func (m *mesh) identity(t testing.TB, name string) *certify.Manager {
	t.Helper()
	return identitytest.Certified(t, m.client, m.anchors, name, m.tokens[name])
}

// meshedProxy starts a proxy with id.
func meshedProxy(t testing.TB, id *certify.Manager, mutate func(*Config), binds ...string) *testProxy {
	t.Helper()
	return startProxyWith(t, Options{Identity: id}, mutate, binds...)
}

// tap relays TCP to target and records what the client side sent.
type tap struct {
	mu   sync.Mutex
	sent bytes.Buffer
}

func (tp *tap) bytes() []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.sent.Bytes())
}

func startTap(t *testing.T, target string) (string, *tap) {
	tp := &tap{}
	addr := listenTCP(t, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(c, up)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				tp.mu.Lock()
				tp.sent.Write(buf[:n])
				tp.mu.Unlock()
				up.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	return addr, tp
}

func TestMTLSBetweenProxies(t *testing.T) {
	m := newMesh(t)
	secret := "very-secret-payload-7c1e"
	// Requests to /hold wait until inFlight of them have arrived.
	const inFlight = 4
	var held atomic.Int64
	allHeld := make(chan struct{})
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			if held.Add(1) == inFlight {
				close(allHeld)
			}
			select {
			case <-allHeld:
			case <-time.After(5 * time.Second):
			}
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "client-id=%s orig-proto=%s body=%s", r.Header.Get(compat.HeaderClientID), r.Header.Get(compat.HeaderOrigProto), body)
	}))
	b := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = backend })
	wire, tp := startTap(t, b.inbound)
	a := meshedProxy(t, m.identity(t, webID), func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"api.shop:80": {{Addr: wire, Proxy: true, Identity: apiID}}}
	}, "api.shop:80")

	for i := range 5 {
		resp, err := http.Post("http://"+a.bindings[0]+"/", "text/plain", strings.NewReader(secret))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "client-id=" + webID + " orig-proto= body=" + secret; string(got) != want {
			t.Fatalf("request %d: got %q, want %q", i, got, want)
		}
	}
	// Over mTLS, HTTP/1 rides pooled HTTP/1 connections, one handshake
	// each: sequential requests reuse one, requests in flight at once use
	// as many as there are (the pooled one and new ones), never more.
	inboundConns := func() float64 {
		return metricValue(t, b.metricsText(t), "tcp_open_total", map[string]string{"direction": "inbound", "peer": "src", "tls": "true", "client_id": webID})
	}
	if got := inboundConns(); got != 1 {
		t.Errorf("B: 5 sequential requests came on %v mTLS connections, want 1", got)
	}
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post("http://"+a.bindings[0]+"/hold", "text/plain", strings.NewReader(secret))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if got := held.Load(); got != inFlight {
		t.Fatalf("backend held %d requests at once, want %d", got, inFlight)
	}
	for range 6 {
		resp, err := http.Post("http://"+a.bindings[0]+"/", "text/plain", strings.NewReader(secret))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := inboundConns(); got != inFlight {
		t.Errorf("B: inbound mTLS connections = %v after %d requests in flight at once and 6 more in sequence, want %d (pooled, one per request in flight)", got, inFlight, inFlight)
	}
	onWire := tp.bytes()
	if len(onWire) < 5 || onWire[0] != 0x16 || onWire[1] != 0x03 {
		t.Errorf("connection between proxies does not start with a TLS handshake: % x", onWire[:min(len(onWire), 8)])
	}
	for _, plain := range []string{secret, "PRI * HTTP/2.0", "POST"} {
		if bytes.Contains(onWire, []byte(plain)) {
			t.Errorf("plaintext %q seen on the wire between proxies", plain)
		}
	}
	ma, mb := a.metricsText(t), b.metricsText(t)
	if got := metricValue(t, ma, "response_total", map[string]string{"direction": "outbound", "tls": "true", "server_id": apiID}); got != 15 {
		t.Errorf("A: response_total{tls=true,server_id=api} = %v, want 15", got)
	}
	if got := metricValue(t, mb, "request_total", map[string]string{"direction": "inbound", "tls": "true", "client_id": webID}); got != 15 {
		t.Errorf("B: request_total{tls=true,client_id=web} = %v, want 15", got)
	}
	if got := metricValue(t, ma, "identity_cert_refresh_count", nil); got < 1 {
		t.Errorf("identity_cert_refresh_count = %v, want ≥ 1", got)
	}
	if got := metricValue(t, ma, "identity_cert_expiration_timestamp_seconds", nil); got < float64(time.Now().Unix()) {
		t.Errorf("identity_cert_expiration_timestamp_seconds = %v, want in the future", got)
	}
}

func TestMTLSOpaqueTCP(t *testing.T) {
	m := newMesh(t)
	backend := listenTCP(t, halfCloseEcho)
	b := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = backend; c.DetectTimeout = 200 * time.Millisecond })
	wire, tp := startTap(t, b.inbound)
	a := meshedProxy(t, m.identity(t, webID), func(c *Config) {
		c.OpaquePorts = map[uint16]bool{5432: true}
		c.Destinations = map[string][]EndpointSpec{"db.shop:5432": {{Addr: wire, Proxy: true, Identity: apiID}}}
	}, "db.shop:5432")
	if got := exchange(t, a.bindings[0], "\x00\x03secret-sql"); got != "\x00\x03secret-sql|bye" {
		t.Errorf("got %q", got)
	}
	if bytes.Contains(tp.bytes(), []byte("secret-sql")) {
		t.Error("opaque payload crossed the wire in plaintext")
	}
	poll.Until(t, 5*time.Second, "the condition", func() bool {
		return metricValue(t, b.metricsText(t), "tcp_open_total", map[string]string{"direction": "inbound", "tls": "true", "client_id": webID}) >= 1
	})
}

func TestMTLSRefusesWrongOrForeignPeer(t *testing.T) {
	m := newMesh(t)
	backend := h2cServer(t, http.HandlerFunc(echo))
	b := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = backend })

	// A client that expects another identity than the server presents.
	a := meshedProxy(t, m.identity(t, webID), func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"api.shop:80": {{Addr: b.inbound, Proxy: true, Identity: webID}}}
	}, "api.shop:80")
	resp, err := http.Post("http://"+a.bindings[0]+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get(compat.HeaderProxyError), "mTLS handshake") {
		t.Errorf("wrong identity: status %d, l5d-proxy-error %q; want 502 naming the mTLS handshake", resp.StatusCode, resp.Header.Get(compat.HeaderProxyError))
	}

	// A client whose certificate comes from a foreign CA.
	foreign := newMesh(t)
	f := meshedProxy(t, foreign.identity(t, webID), func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"api.shop:80": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
	}, "api.shop:80")
	resp, err = http.Post("http://"+f.bindings[0]+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("foreign CA: status %d, want 502", resp.StatusCode)
	}
	if got := metricValue(t, b.metricsText(t), "request_total", map[string]string{"direction": "inbound"}); got != 0 {
		t.Errorf("B forwarded %v requests from refused peers", got)
	}
}

func TestPlaintextFromUnmeshedClientAccepted(t *testing.T) {
	m := newMesh(t)
	backend := h2cServer(t, http.HandlerFunc(echo))
	b := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = backend })
	req, _ := http.NewRequest("GET", "http://"+b.inbound+"/", nil)
	req.Header.Set(compat.HeaderClientID, webID) // forged: must not reach the app
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Client-Id") != "" {
		t.Errorf("status %d, app saw client id %q; want 200 and none", resp.StatusCode, resp.Header.Get("X-Client-Id"))
	}
	if got := metricValue(t, b.metricsText(t), "request_total", map[string]string{"direction": "inbound", "tls": "no_identity", "no_tls_reason": "no_tls_from_remote"}); got != 1 {
		t.Errorf("request_total{tls=no_identity} = %v, want 1", got)
	}
}

// An HTTP/2 connection verified as one identity never carries a request
// that expects another identity at the same address: the Transports pool
// by URL host, so each (address, identity) gets a pool of its own.
func TestH2PoolsPerPeerIdentity(t *testing.T) {
	m := newMesh(t)
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client-id=%s", r.Header.Get(compat.HeaderClientID))
	}))
	b := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = backend })
	// Two names at one address: the proxy there is api, so only requests
	// to api.shop may be served; web.shop's must fail the identity check.
	a := meshedProxy(t, m.identity(t, webID), func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{
			"api.shop:80": {{Addr: b.inbound, Proxy: true, Identity: apiID}},
			"web.shop:80": {{Addr: b.inbound, Proxy: true, Identity: webID}},
		}
	}, "api.shop:80", "web.shop:80")
	client := h2cClient()
	get := func(bind string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + bind + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(a.bindings[0]); code != http.StatusOK || body != "client-id="+webID {
		t.Fatalf("api.shop over h2: %d %q, want 200 client-id=%s", code, body, webID)
	}
	for i := range 3 {
		if code, body := get(a.bindings[1]); code == http.StatusOK {
			t.Fatalf("request %d to web.shop (expects %s) at api's address was served: %d %q — it rode the connection verified as %s", i, webID, code, body, apiID)
		}
	}
	if code, _ := get(a.bindings[0]); code != http.StatusOK {
		t.Fatalf("api.shop after: %d, want 200", code)
	}
}
