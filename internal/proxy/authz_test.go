package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/poll"
)

// fixedPolicies is a policy Source with one policy per port; other ports deny.
type fixedPolicies map[uint16]*authz.Policy

func (f fixedPolicies) Policy(port uint16) *authz.Policy {
	if p := f[port]; p != nil {
		return p
	}
	deny, _ := authz.Compile(authz.ForDefault(authz.Deny, nil), nil)
	return deny
}

func portOfAddr(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

func compilePolicy(t *testing.T, p *authz.PortPolicy) *authz.Policy {
	t.Helper()
	c, err := authz.Compile(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	webServer = authz.Meta{Group: "policy.linkerd.io", Kind: "server", Name: "web-http"}
	webOnly   = authz.Authorization{Meta: authz.Meta{Group: "policy.linkerd.io", Kind: "authorizationpolicy", Name: "web-only"},
		Authn: authz.MeshTLS, Identities: []string{webID}}
)

// policyMesh is a server proxy (identity api) enforcing pol on its
// backend's port, and meshed clients with the web and api identities
// (the second an "intruder" with a valid certificate).
type policyMesh struct {
	server          *testProxy
	web, intruder   *testProxy
	backend, public string
}

func newPolicyMesh(t *testing.T, backend string, pol func(port uint16) *authz.PortPolicy) *policyMesh {
	t.Helper()
	m := newMesh(t)
	port := portOfAddr(t, backend)
	src := fixedPolicies{port: compilePolicy(t, pol(port))}
	b := startProxyWith(t, Options{Identity: m.identity(t, apiID), Policies: src}, func(c *Config) { c.InboundForward = backend })
	client := func(id string) *testProxy {
		return meshedProxy(t, m.identity(t, id), func(c *Config) {
			c.Destinations = map[string][]EndpointSpec{"app.shop:80": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
		}, "app.shop:80")
	}
	return &policyMesh{server: b, web: client(webID), intruder: client(apiID), backend: backend}
}

func httpGet(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestPolicyMeshTLSAuthorization(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client-id=%s", r.Header.Get(compat.HeaderClientID))
	}))
	pm := newPolicyMesh(t, backend, func(uint16) *authz.PortPolicy {
		return &authz.PortPolicy{Server: webServer, Default: authz.Deny, Authorizations: []authz.Authorization{webOnly}}
	})
	for range 3 {
		if code, _, body := httpGet(t, "http://"+pm.web.bindings[0]+"/"); code != 200 || body != "client-id="+webID {
			t.Fatalf("authorized client: %d %q, want 200 and its identity in l5d-client-id", code, body)
		}
	}
	for range 2 {
		code, h, _ := httpGet(t, "http://"+pm.intruder.bindings[0]+"/")
		if code != http.StatusForbidden || h.Get(compat.HeaderProxyError) != compat.ProxyErrorUnauthorized {
			t.Fatalf("other identity: %d l5d-proxy-error %q, want 403 %q", code, h.Get(compat.HeaderProxyError), compat.ProxyErrorUnauthorized)
		}
	}
	// Plaintext straight to the server's inbound port, forging the header.
	req, _ := http.NewRequest("GET", "http://"+pm.server.inbound+"/", nil)
	req.Header.Set(compat.HeaderClientID, webID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("plaintext with a forged l5d-client-id: %d, want 403", resp.StatusCode)
	}
	mt := pm.server.metricsText(t)
	allow := map[string]string{"srv_kind": "server", "srv_name": "web-http", "authz_name": "web-only", "authz_kind": "authorizationpolicy",
		"route_kind": "default", "route_name": "default", "tls": "true", "client_id": webID, "target_addr": backend}
	if got := metricValue(t, mt, compat.MetricInboundHTTPAuthzAllow, allow); got != 3 {
		t.Errorf("%s%v = %v, want 3", compat.MetricInboundHTTPAuthzAllow, allow, got)
	}
	if got := metricValue(t, mt, compat.MetricInboundHTTPAuthzDeny, map[string]string{"srv_name": "web-http", "client_id": apiID, "tls": "true"}); got != 2 {
		t.Errorf("deny{client_id=api} = %v, want 2", got)
	}
	if got := metricValue(t, mt, compat.MetricInboundHTTPAuthzDeny, map[string]string{"srv_name": "web-http", "tls": "no_identity"}); got != 1 {
		t.Errorf("deny{tls=no_identity} = %v, want 1", got)
	}
	if got := metricValue(t, mt, "request_total", map[string]string{"direction": "inbound"}); got != 3 {
		t.Errorf("the app received %v requests, want only the 3 authorized", got)
	}
}

func TestPolicyOpaqueTCP(t *testing.T) {
	backend := listenTCP(t, halfCloseEcho)
	m := newMesh(t)
	port := portOfAddr(t, backend)
	pol := compilePolicy(t, &authz.PortPolicy{Server: webServer, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
		Authorizations: []authz.Authorization{webOnly}})
	// Explicit mode: the opaque transport's header names the port the
	// client dialed (5432), plaintext arrives on the forward port.
	src := fixedPolicies{port: pol, 5432: pol}
	b := startProxyWith(t, Options{Identity: m.identity(t, apiID), Policies: src}, func(c *Config) {
		c.InboundForward = backend
		c.DetectTimeout = 200 * time.Millisecond // plaintext: detected as opaque
	})
	client := func(id string) *testProxy {
		return meshedProxy(t, m.identity(t, id), func(c *Config) {
			c.OpaquePorts = map[uint16]bool{5432: true}
			c.Destinations = map[string][]EndpointSpec{"db.shop:5432": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
		}, "db.shop:5432")
	}
	if got := exchange(t, client(webID).bindings[0], "hello"); got != "hello|bye" {
		t.Errorf("authorized opaque connection: got %q", got)
	}
	if got := exchange(t, client(apiID).bindings[0], "hello"); got != "" {
		t.Errorf("unauthorized opaque connection got %q, want it closed", got)
	}
	if got := exchange(t, b.inbound, "hello"); got != "" {
		t.Errorf("plaintext opaque connection got %q, want it closed", got)
	}
	poll.Until(t, 5*time.Second, "the authorization metrics", func() bool {
		mt := b.metricsText(t)
		return metricValue(t, mt, compat.MetricInboundTCPAuthzAllow, map[string]string{"srv_name": "web-http", "authz_name": "web-only", "client_id": webID}) == 1 &&
			metricValue(t, mt, compat.MetricInboundTCPAuthzDeny, map[string]string{"srv_name": "web-http"}) == 2
	})
}

func TestPolicyProbesAndGRPC(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	m := newMesh(t)
	port := portOfAddr(t, backend)
	// The static configuration: deny by default, kubelet probes on /ready.
	b := startProxyWith(t, Options{Identity: m.identity(t, apiID)}, func(c *Config) {
		c.InboundForward = backend
		if err := c.ApplyEnv(mapEnv(map[string]string{
			compat.EnvInboundDefaultPolicy: "deny",
			compat.EnvInboundProbes:        fmt.Sprintf("%d/ready,%d/live", port, port),
		})); err != nil {
			t.Fatal(err)
		}
	})
	if code, _, _ := httpGet(t, "http://"+b.inbound+"/ready"); code != 200 {
		t.Errorf("kubelet probe under deny: %d, want 200", code)
	}
	if code, h, _ := httpGet(t, "http://"+b.inbound+"/other"); code != http.StatusForbidden || h.Get(compat.HeaderProxyError) == "" {
		t.Errorf("non-probe path under deny: %d, want 403 with l5d-proxy-error", code)
	}
	mt := b.metricsText(t)
	if got := metricValue(t, mt, compat.MetricInboundHTTPAuthzAllow, map[string]string{"srv_kind": "default", "srv_name": "deny", "route_name": "probe", "authz_name": "probe"}); got != 1 {
		t.Errorf("probe allow metric = %v, want 1", got)
	}

	conn, err := grpc.NewClient(b.inbound, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("denied gRPC call: %v, want PERMISSION_DENIED", err)
	}
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// load sends rps GET requests per second through addr for a 2 s warm-up
// (which drains the limiter's one-second burst) and then for d, and counts
// the answers to the requests sent after the warm-up by status; it returns
// how long those took to send.
func load(t *testing.T, addr string, rps int, d time.Duration) (map[int]int, time.Duration) {
	counts, _, elapsed := loadAll(t, addr, rps, d)
	return counts, elapsed
}

// loadAll is load that also returns the counts of every answer, warm-up included.
func loadAll(t *testing.T, addr string, rps int, d time.Duration) (map[int]int, map[int]int, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	counts, all := map[int]int{}, map[int]int{}
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	warm := 2 * rps
	var start time.Time
	for i := range warm + int(d.Seconds()*float64(rps)) {
		<-tick.C
		if i == warm {
			start = time.Now()
		}
		counted := i >= warm
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := -1
			if resp, err := client.Get("http://" + addr + "/"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			mu.Lock()
			all[code]++
			if counted {
				counts[code]++
			}
			mu.Unlock()
		}()
	}
	elapsed := time.Since(start)
	wg.Wait()
	return counts, all, elapsed
}

func within(got, want, tolerance float64) bool {
	return got >= want*(1-tolerance) && got <= want*(1+tolerance)
}

func TestPolicyRateLimitTotal(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	rl := authz.Meta{Group: "policy.linkerd.io", Kind: "httplocalratelimitpolicy", Name: "web-rl"}
	pm := newPolicyMesh(t, backend, func(uint16) *authz.PortPolicy {
		return &authz.PortPolicy{Server: webServer, Default: authz.AllAuthenticated, ProbePaths: []string{"/ready"},
			RateLimit: &authz.RateLimit{Meta: rl, Total: 20}}
	})
	counts, all, elapsed := loadAll(t, pm.web.bindings[0], 50, 3*time.Second)
	ok := float64(counts[200]) / elapsed.Seconds()
	t.Logf("50 rps offered for %v: %d × 200 (%.1f rps), %d × 429, other %v", elapsed.Round(time.Millisecond), counts[200], ok, counts[429], counts)
	if !within(ok, 20, 0.1) {
		t.Errorf("admitted %.1f rps under total.requestsPerSecond 20, want 20 ± 10%%", ok)
	}
	if counts[200]+counts[429] != 150 {
		t.Errorf("answers %v, want only 200 and 429", counts)
	}
	// The limit is spent; kubelet's probes still pass.
	for i := range 30 {
		if code, _, _ := httpGet(t, "http://"+pm.server.inbound+"/ready"); code != 200 {
			t.Fatalf("probe %d under an exhausted rate limit: %d, want 200", i, code)
		}
	}
	if got := metricValue(t, pm.server.metricsText(t), compat.MetricInboundHTTPRateLimit, map[string]string{"srv_name": "web-http", "ratelimit_name": "web-rl", "ratelimit_scope": "total"}); got != float64(all[429]) {
		t.Errorf("%s = %v, want %d (warm-up included)", compat.MetricInboundHTTPRateLimit, got, all[429])
	}
}

func TestPolicyRateLimitOverride(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	pm := newPolicyMesh(t, backend, func(uint16) *authz.PortPolicy {
		return &authz.PortPolicy{Server: webServer, Default: authz.AllAuthenticated, RateLimit: &authz.RateLimit{
			Meta: authz.Meta{Name: "per-client"}, Identity: 10,
			Overrides: []authz.RateOverride{{Clients: []string{webID}, RequestsPerSecond: 30}}}}
	})
	var wg sync.WaitGroup
	results := map[string]float64{}
	var mu sync.Mutex
	for name, addr := range map[string]string{"web": pm.web.bindings[0], "other": pm.intruder.bindings[0]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts, elapsed := load(t, addr, 50, 3*time.Second)
			mu.Lock()
			results[name] = float64(counts[200]) / elapsed.Seconds()
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("admitted: web (override 30) %.1f rps, other (identity 10) %.1f rps", results["web"], results["other"])
	if !within(results["web"], 30, 0.1) || !within(results["other"], 10, 0.1) {
		t.Errorf("admitted web %.1f rps (want 30), other %.1f rps (want 10), ± 10%%", results["web"], results["other"])
	}
}

func TestPolicyEnv(t *testing.T) {
	c := DefaultConfig()
	if c.Policy.Default != authz.AllUnauthenticated {
		t.Errorf("default policy %q", c.Policy.Default)
	}
	err := c.ApplyEnv(mapEnv(map[string]string{
		compat.EnvInboundDefaultPolicy:  "cluster-authenticated",
		compat.EnvInboundRequireID:      "8080,9000-9001",
		compat.EnvPolicyClusterNetworks: "198.18.0.0/16,198.19.0.0/16",
		compat.EnvPolicyWorkload:        "shop:web-0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Default != authz.ClusterAuthenticated || !c.Policy.RequireIdentity[9001] || len(c.Policy.ClusterNetworks) != 2 || c.Policy.Workload != "shop:web-0" {
		t.Errorf("policy config %+v", c.Policy)
	}
	for name, v := range map[string]string{compat.EnvInboundDefaultPolicy: "allow", compat.EnvPolicyClusterNetworks: "10.0.0.0/33",
		compat.EnvInboundRequireID: "x", compat.EnvInboundProbes: "ready"} {
		c := DefaultConfig()
		if err := c.ApplyEnv(mapEnv(map[string]string{name: v})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err %v, want one naming the variable", name, v, err)
		}
	}
}

// swappablePolicies is a policy Source whose policy can change, like the
// policy controller's stream.
type swappablePolicies struct{ cur atomic.Pointer[authz.Policy] }

func (s *swappablePolicies) Policy(uint16) *authz.Policy { return s.cur.Load() }

// TestPolicyChangeClosesOpenConnections: an authorized opaque connection
// that stays open is closed within a second of a policy that no longer
// admits its client, and counted; one the new policy still admits stays.
func TestPolicyChangeClosesOpenConnections(t *testing.T) {
	backend := listenTCP(t, func(c net.Conn) { io.Copy(c, c) })
	m := newMesh(t)
	src := &swappablePolicies{}
	webAndAPI := webOnly
	webAndAPI.Identities = []string{webID, apiID}
	src.cur.Store(compilePolicy(t, &authz.PortPolicy{Server: webServer, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
		Authorizations: []authz.Authorization{webAndAPI}}))
	b := startProxyWith(t, Options{Identity: m.identity(t, apiID), Policies: src}, func(c *Config) { c.InboundForward = backend })
	open := func(id string) net.Conn {
		cp := meshedProxy(t, m.identity(t, id), func(c *Config) {
			c.OpaquePorts = map[uint16]bool{5432: true}
			c.Destinations = map[string][]EndpointSpec{"db.shop:5432": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
		}, "db.shop:5432")
		c, err := net.Dial("tcp", cp.bindings[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("%s: echo %q, %v", id, buf, err)
		}
		return c
	}
	web, intruder := open(webID), open(apiID)

	src.cur.Store(compilePolicy(t, &authz.PortPolicy{Server: webServer, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
		Authorizations: []authz.Authorization{webOnly}}))
	changed := time.Now()
	intruder.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := intruder.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the intruder's connection stayed open after the policy change (read %d, %v)", n, err)
	}
	took := time.Since(changed)
	t.Logf("the intruder's connection closed %v after the policy change", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("closed after %v, want within 1 s", took)
	}
	if _, err := io.WriteString(web, "pong"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(web, buf); err != nil || string(buf) != "pong" {
		t.Errorf("the still-authorized connection: echo %q, %v", buf, err)
	}
	poll.Until(t, 5*time.Second, "the termination metric", func() bool {
		return metricValue(t, b.metricsText(t), compat.MetricInboundTCPAuthzTerminate, map[string]string{"srv_name": "web-http"}) == 1
	})
}

// TestTunnelPortCannotChooseThePolicy: in explicit mode every connection
// goes to the forward address, so a meshed client naming another port in
// the opaque transport's header (one an open policy covers) is still
// decided by the forward port's policy.
func TestTunnelPortCannotChooseThePolicy(t *testing.T) {
	backend := listenTCP(t, halfCloseEcho)
	m := newMesh(t)
	port := portOfAddr(t, backend)
	webOnlyPol := compilePolicy(t, &authz.PortPolicy{Server: webServer, Protocol: authz.ProtocolOpaque, Default: authz.Deny,
		Authorizations: []authz.Authorization{webOnly}})
	open := compilePolicy(t, authz.ForDefault(authz.AllUnauthenticated, nil))
	src := fixedPolicies{port: webOnlyPol, 5432: open}
	b := startProxyWith(t, Options{Identity: m.identity(t, apiID), Policies: src}, func(c *Config) { c.InboundForward = backend })
	intruder := meshedProxy(t, m.identity(t, apiID), func(c *Config) {
		c.OpaquePorts = map[uint16]bool{5432: true}
		c.Destinations = map[string][]EndpointSpec{"db.shop:5432": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
	}, "db.shop:5432")
	if got := exchange(t, intruder.bindings[0], "hello"); got != "" {
		t.Errorf("a tunnel naming an open port reached the forward address: got %q, want the connection closed", got)
	}
}

// TestPolicyAllowCountedPerDecisionOnOneConnection: requests on one
// keep-alive connection that get different decisions (a probe route and
// the default) each count on their own allow series (the per-connection
// counter cache follows the decision).
func TestPolicyAllowCountedPerDecisionOnOneConnection(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	port := portOfAddr(t, backend)
	b := startProxy(t, func(c *Config) {
		c.InboundForward = backend
		if err := c.ApplyEnv(mapEnv(map[string]string{
			compat.EnvInboundDefaultPolicy: "all-unauthenticated",
			compat.EnvInboundProbes:        fmt.Sprintf("%d/ready", port),
		})); err != nil {
			t.Fatal(err)
		}
	})
	var conns atomic.Int32
	client := &http.Client{Transport: &http.Transport{
		MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	for _, path := range []string{"/ready", "/other", "/ready", "/other", "/other"} {
		resp, err := client.Get("http://" + b.inbound + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 (keep-alive)", n)
	}
	mt := b.metricsText(t)
	if got := metricValue(t, mt, compat.MetricInboundHTTPAuthzAllow, map[string]string{"route_name": "probe"}); got != 2 {
		t.Errorf("probe route allowed %v, want 2\n%s", got, mt)
	}
	if got := metricValue(t, mt, compat.MetricInboundHTTPAuthzAllow, nil); got != 5 {
		t.Errorf("allowed %v in all, want 5", got)
	}
}
