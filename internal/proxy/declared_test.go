package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/poll"
)

var (
	anyone = authz.Authorization{Meta: authz.Meta{Group: "policy.linkerd.io", Kind: "authorizationpolicy", Name: "anyone"},
		Networks: authz.AllNetworks, Authn: authz.Unauthenticated}
	webTCP = authz.Meta{Group: "policy.linkerd.io", Kind: "server", Name: "web-tcp"}
)

// redirectedProxy is a proxy whose inbound connections look redirected
// by iptables to app (SO_ORIGINAL_DST answers app's address, as it does
// in a pod), enforcing pol on app's port.
func redirectedProxy(t *testing.T, app string, pol *authz.PortPolicy, mutate func(*Config)) *testProxy {
	t.Helper()
	orig, err := netip.ParseAddrPort(app)
	if err != nil {
		t.Fatal(err)
	}
	src := fixedPolicies{orig.Port(): compilePolicy(t, pol)}
	return startProxyWith(t, Options{Policies: src, origDst: func(net.Conn) (netip.AddrPort, error) { return orig, nil }}, mutate)
}

// readWithin reads what arrives on c within d, and how long the first
// byte (or the end) took.
func readWithin(t *testing.T, c net.Conn, d time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	return string(buf[:n]), time.Since(start)
}

// TestDeclaredOpaqueServerSpeaksFirst: behind a Server declaring
// proxyProtocol opaque, a server-speaks-first application's banner
// reaches the client at once (not after the detection timeout, as on a
// port left to detection), the connection is decided by the Server's
// authorizations, and a denied one is closed at once.
func TestDeclaredOpaqueServerSpeaksFirst(t *testing.T) {
	const detectTimeout = 1500 * time.Millisecond
	banner := listenTCP(t, func(c net.Conn) {
		io.WriteString(c, "220 smtp ready\r\n")
		io.Copy(io.Discard, c)
	})
	dial := func(t *testing.T, tp *testProxy) net.Conn {
		c, err := net.Dial("tcp", tp.inbound)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	setTimeout := func(c *Config) { c.DetectTimeout = detectTimeout }

	t.Run("opaque", func(t *testing.T) {
		tp := redirectedProxy(t, banner, &authz.PortPolicy{Server: webTCP, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
			Authorizations: []authz.Authorization{anyone}}, setTimeout)
		got, took := readWithin(t, dial(t, tp), 5*time.Second)
		if got != "220 smtp ready\r\n" || took > detectTimeout/3 {
			t.Fatalf("banner %q after %v, want it at once (detection timeout %v)", got, took, detectTimeout)
		}
		t.Logf("banner after %v", took)
		poll.Until(t, 5*time.Second, "the TCP authorization metric", func() bool {
			return metricValue(t, tp.metricsText(t), compat.MetricInboundTCPAuthzAllow, map[string]string{"srv_name": "web-tcp", "authz_name": "anyone"}) == 1
		})
	})
	t.Run("unknown waits for detection", func(t *testing.T) {
		tp := redirectedProxy(t, banner, &authz.PortPolicy{Server: webTCP, Protocol: authz.ProtocolUnknown, Default: authz.Deny,
			Authorizations: []authz.Authorization{anyone}}, setTimeout)
		got, took := readWithin(t, dial(t, tp), 5*time.Second)
		// The proxy's detection clock starts when it accepts, a moment
		// before or after this test's; 5 % of slack keeps the contrast
		// with the opaque case (a third of the timeout at most).
		if got != "220 smtp ready\r\n" || took < detectTimeout*95/100 {
			t.Fatalf("banner %q after %v, want it only after the detection timeout %v", got, took, detectTimeout)
		}
	})
	t.Run("opaque and denied", func(t *testing.T) {
		tp := redirectedProxy(t, banner, &authz.PortPolicy{Server: webTCP, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
			Authorizations: []authz.Authorization{webOnly}}, setTimeout)
		got, took := readWithin(t, dial(t, tp), 5*time.Second)
		if got != "" || took > detectTimeout/3 {
			t.Fatalf("got %q after %v, want the connection closed at once", got, took)
		}
		if v := metricValue(t, tp.metricsText(t), compat.MetricInboundTCPAuthzDeny, map[string]string{"srv_name": "web-tcp"}); v != 1 {
			t.Errorf("%s = %v, want 1", compat.MetricInboundTCPAuthzDeny, v)
		}
	})
}

// TestDeclaredOpaqueOverTheOpaqueTransport: a meshed client reaches a
// server-speaks-first application behind an opaque Server through the
// opaque transport (mTLS), authorized by its identity, at once.
func TestDeclaredOpaqueOverTheOpaqueTransport(t *testing.T) {
	banner := listenTCP(t, func(c net.Conn) {
		io.WriteString(c, "220 smtp ready\r\n")
		io.Copy(io.Discard, c)
	})
	m := newMesh(t)
	pol := compilePolicy(t, &authz.PortPolicy{Server: webTCP, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
		Authorizations: []authz.Authorization{webOnly}})
	b := startProxyWith(t, Options{Identity: m.identity(t, apiID), Policies: fixedPolicies{portOfAddr(t, banner): pol, 25: pol}},
		func(c *Config) { c.InboundForward, c.DetectTimeout = banner, 2*time.Second })
	client := func(id string) *testProxy {
		return meshedProxy(t, m.identity(t, id), func(c *Config) {
			c.OpaquePorts = map[uint16]bool{25: true}
			c.DetectTimeout = 2 * time.Second
			c.Destinations = map[string][]EndpointSpec{"mail.shop:25": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
		}, "mail.shop:25")
	}
	c, err := net.Dial("tcp", client(webID).bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, took := readWithin(t, c, 5*time.Second); got != "220 smtp ready\r\n" || took > time.Second {
		t.Fatalf("authorized: banner %q after %v, want it at once", got, took)
	}
	c2, err := net.Dial("tcp", client(apiID).bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, took := readWithin(t, c2, 5*time.Second); got != "" || took > time.Second {
		t.Fatalf("other identity: got %q after %v, want the connection closed at once", got, took)
	}
	poll.Until(t, 5*time.Second, "the TCP authorization metrics", func() bool {
		mt := b.metricsText(t)
		return metricValue(t, mt, compat.MetricInboundTCPAuthzAllow, map[string]string{"srv_name": "web-tcp", "authz_name": "web-only", "client_id": webID, "tls": "true"}) == 1 &&
			metricValue(t, mt, compat.MetricInboundTCPAuthzDeny, map[string]string{"srv_name": "web-tcp", "client_id": apiID}) == 1
	})
}

// slowRequest sends an HTTP/1.1 request a few bytes, a pause, then the
// rest (pause before anything when split is 0), and returns the status
// line and l5d-proxy-error, or "" when the connection ends without an
// answer.
func slowRequest(t *testing.T, addr, path string, split int, pause time.Duration) (status, proxyErr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
	io.WriteString(c, req[:split])
	time.Sleep(pause)
	io.WriteString(c, req[split:])
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", ""
	}
	resp.Body.Close()
	return resp.Status, resp.Header.Get(compat.HeaderProxyError)
}

// TestDeclaredHTTPSlowClient: on a Server declaring HTTP/1, a client
// slower than the detection timeout (silent at first, or pausing inside
// the request line) is still served as HTTP: its route's policy applies
// (GET /public for everyone, /admin for the web identity only) instead of
// the Server-wide authorizations of opaque TCP. On a port left to
// detection the same client is forwarded as opaque TCP and, with no
// Server-wide authorization, closed.
func TestDeclaredHTTPSlowClient(t *testing.T) {
	const detectTimeout = 300 * time.Millisecond
	backend := h2cServer(t, http.HandlerFunc(echo))
	routes := []authz.Route{
		{Meta: authz.Meta{Group: "policy.linkerd.io", Kind: "HTTPRoute", Name: "public"},
			Matches:        []authz.RouteMatch{{Path: &authz.PathMatch{Kind: authz.PathPrefix, Value: "/public"}}},
			Authorizations: []authz.Authorization{anyone}},
		{Meta: authz.Meta{Group: "policy.linkerd.io", Kind: "HTTPRoute", Name: "admin"},
			Matches:        []authz.RouteMatch{{Path: &authz.PathMatch{Kind: authz.PathPrefix, Value: "/admin"}}},
			Authorizations: []authz.Authorization{webOnly}},
	}
	policy := func(proto authz.Protocol) *authz.PortPolicy {
		return &authz.PortPolicy{Server: webServer, Protocol: proto, Default: authz.Deny, Routes: routes}
	}
	setTimeout := func(c *Config) { c.DetectTimeout = detectTimeout }
	for _, proto := range []authz.Protocol{authz.ProtocolHTTP1, authz.ProtocolHTTP2, authz.ProtocolGRPC} {
		t.Run(string(proto), func(t *testing.T) {
			tp := redirectedProxy(t, backend, policy(proto), setTimeout)
			for _, tc := range []struct {
				name, path   string
				split        int
				want, reason string
			}{
				{"pause in the request line", "/public/x", 2, "200 OK", ""},
				{"silent at first", "/public/y", 0, "200 OK", ""},
				{"route-scoped denial", "/admin", 2, "403 Forbidden", compat.ProxyErrorUnauthorized},
				{"no route", "/other", 2, "404 Not Found", compat.ProxyErrorRouteNotFound},
			} {
				if got, reason := slowRequest(t, tp.inbound, tc.path, tc.split, 2*detectTimeout); got != tc.want || reason != tc.reason {
					t.Errorf("%s: GET %s = %q (l5d-proxy-error %q), want %q (%q)", tc.name, tc.path, got, reason, tc.want, tc.reason)
				}
			}
			mt := tp.metricsText(t)
			if v := metricValue(t, mt, compat.MetricInboundHTTPAuthzAllow, map[string]string{"srv_name": "web-http", "route_name": "public", "authz_name": "anyone"}); v != 2 {
				t.Errorf("allowed on route public = %v, want 2", v)
			}
			if v := metricValue(t, mt, compat.MetricInboundHTTPAuthzDeny, map[string]string{"srv_name": "web-http", "route_name": "admin"}); v != 1 {
				t.Errorf("denied on route admin = %v, want 1", v)
			}
			if v := metricValue(t, mt, compat.MetricInboundTCPAuthzDeny, nil); v != 0 {
				t.Errorf("%s = %v: a slow HTTP client was handled as opaque TCP", compat.MetricInboundTCPAuthzDeny, v)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		tp := redirectedProxy(t, backend, policy(authz.ProtocolUnknown), setTimeout)
		if got, _ := slowRequest(t, tp.inbound, "/public/x", 2, 2*detectTimeout); got != "" {
			t.Errorf("slow client on a detected port: %q, want the connection closed (opaque TCP, no Server-wide authorization)", got)
		}
		if got, _ := slowRequest(t, tp.inbound, "/public/x", 2, 0); got != "200 OK" {
			t.Errorf("prompt client on a detected port: %q, want 200 OK", got)
		}
	})
}

// TestDeclaredHTTPProtocols: a declared HTTP/2 port serves an h2c client
// and a declared gRPC port a gRPC call, at once; a meshed client's mTLS
// on a declared HTTP/1 port is terminated and its identity authorized.
func TestDeclaredHTTPProtocols(t *testing.T) {
	allow := func(proto authz.Protocol) *authz.PortPolicy {
		return &authz.PortPolicy{Server: webServer, Protocol: proto, Default: authz.Deny, Authorizations: []authz.Authorization{anyone}}
	}
	long := func(c *Config) { c.DetectTimeout = 5 * time.Second }
	t.Run("HTTP/2", func(t *testing.T) {
		tp := redirectedProxy(t, h2cServer(t, http.HandlerFunc(echo)), allow(authz.ProtocolHTTP2), long)
		start := time.Now()
		resp, err := h2cClient().Get("http://" + tp.inbound + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 || time.Since(start) > 2*time.Second {
			t.Errorf("h2c: %d %s after %v", resp.StatusCode, resp.Proto, time.Since(start))
		}
	})
	t.Run("gRPC", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		go gs.Serve(l)
		t.Cleanup(gs.Stop)
		tp := redirectedProxy(t, l.Addr().String(), allow(authz.ProtocolGRPC), long)
		conn, err := grpc.NewClient(tp.inbound, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("gRPC health check: %v, %v", resp, err)
		}
	})
	t.Run("HTTP/1 over mTLS", func(t *testing.T) {
		backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "client-id=%s", r.Header.Get(compat.HeaderClientID))
		}))
		pm := newPolicyMesh(t, backend, func(uint16) *authz.PortPolicy {
			return &authz.PortPolicy{Server: webServer, Protocol: authz.ProtocolHTTP1, Default: authz.Deny, Authorizations: []authz.Authorization{webOnly}}
		})
		if code, _, body := httpGet(t, "http://"+pm.web.bindings[0]+"/"); code != 200 || body != "client-id="+webID {
			t.Errorf("authorized meshed client: %d %q", code, body)
		}
		if code, _, _ := httpGet(t, "http://"+pm.intruder.bindings[0]+"/"); code != http.StatusForbidden {
			t.Errorf("other identity: %d, want 403", code)
		}
	})
}

// selfSigned is a TLS certificate for name, signed by itself.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestDeclaredTLSPassesThrough: behind a Server declaring TLS, the
// application's own TLS reaches it untouched — the client completes the
// handshake with the application's certificate — from an unmeshed client
// and from a meshed one (inside the proxies' mTLS, authorized by its
// identity).
func TestDeclaredTLSPassesThrough(t *testing.T) {
	cert := selfSigned(t, "secure.shop")
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "tls-echo "+line)
			}()
		}
	}()
	app := l.Addr().String()
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots.AddCert(leaf)
	talk := func(t *testing.T, addr string) string {
		t.Helper()
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(raw, &tls.Config{ServerName: "secure.shop", RootCAs: roots})
		if err := c.Handshake(); err != nil {
			return "handshake: " + err.Error()
		}
		io.WriteString(c, "hello\n")
		got, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(got)
	}
	pol := &authz.PortPolicy{Server: webTCP, Protocol: authz.ProtocolTLS, Default: authz.Deny, Authorizations: []authz.Authorization{anyone}}

	t.Run("unmeshed", func(t *testing.T) {
		tp := redirectedProxy(t, app, pol, nil)
		if got := talk(t, tp.inbound); got != "tls-echo hello" {
			t.Fatalf("got %q", got)
		}
		// Plaintext HTTP on the TLS port is not taken for HTTP either:
		// it reaches the application (whose TLS server refuses it).
		if got := exchange(t, tp.inbound, "GET / HTTP/1.1\r\nHost: secure.shop\r\n\r\n"); strings.HasPrefix(got, "HTTP/") {
			t.Errorf("plaintext HTTP on a TLS port answered as HTTP: %q", got)
		}
		if v := metricValue(t, tp.metricsText(t), compat.MetricInboundTCPAuthzAllow, map[string]string{"srv_name": "web-tcp"}); v != 2 {
			t.Errorf("%s = %v, want 2 (both forwarded as TCP)", compat.MetricInboundTCPAuthzAllow, v)
		}
		if v := metricValue(t, tp.metricsText(t), "request_total", nil); v != 0 {
			t.Errorf("request_total = %v: the proxy looked into the application's TLS", v)
		}
	})
	t.Run("meshed", func(t *testing.T) {
		m := newMesh(t)
		p := *pol
		p.Authorizations = []authz.Authorization{webOnly}
		b := startProxyWith(t, Options{Identity: m.identity(t, apiID), Policies: fixedPolicies{portOfAddr(t, app): compilePolicy(t, &p)}},
			func(c *Config) { c.InboundForward = app })
		client := func(id string) *testProxy {
			return meshedProxy(t, m.identity(t, id), func(c *Config) {
				c.Destinations = map[string][]EndpointSpec{"secure.shop:443": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
			}, "secure.shop:443")
		}
		if got := talk(t, client(webID).bindings[0]); got != "tls-echo hello" {
			t.Fatalf("authorized meshed client: %q", got)
		}
		if got := talk(t, client(apiID).bindings[0]); !strings.HasPrefix(got, "handshake:") {
			t.Errorf("other identity: %q, want the connection closed before the application's handshake", got)
		}
		poll.Until(t, 5*time.Second, "the TCP authorization metrics", func() bool {
			mt := b.metricsText(t)
			return metricValue(t, mt, compat.MetricInboundTCPAuthzAllow, map[string]string{"srv_name": "web-tcp", "client_id": webID, "tls": "true"}) == 1 &&
				metricValue(t, mt, compat.MetricInboundTCPAuthzDeny, map[string]string{"srv_name": "web-tcp", "client_id": apiID}) == 1
		})
	})
}
