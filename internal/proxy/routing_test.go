package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/route"
	"github.com/weftmesh/weft/internal/target"
)

// meshResolver is an in-process control plane for tests: Services by
// authority, each with its own endpoint pool and, for parents, a route
// table the test publishes and replaces as the policy controller would.
type meshResolver struct {
	mu   sync.Mutex
	dsts map[string]target.Destination
}

func newMeshResolver() *meshResolver { return &meshResolver{dsts: map[string]target.Destination{}} }

// service registers a Service at authority with the given endpoints and
// returns its (initially empty) route table holder.
func (m *meshResolver) service(authority string, addrs ...string) *route.Current {
	return m.serviceWith(balance.NewP2CPeakEWMA(), authority, addrs...)
}

// serviceWith is service with the pool's selector chosen.
func (m *meshResolver) serviceWith(sel balance.Selector, authority string, addrs ...string) *route.Current {
	pool := balance.NewPool(sel)
	var eps []*balance.Endpoint
	for _, a := range addrs {
		eps = append(eps, balance.NewEndpoint(a, 1, balance.Peer{}))
	}
	pool.Update(eps)
	cur := &route.Current{}
	m.mu.Lock()
	m.dsts[authority] = target.Destination{Pool: pool, Routes: cur}
	m.mu.Unlock()
	return cur
}

func (m *meshResolver) Resolve(dst string) (target.Destination, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.dsts[dst]
	if !ok {
		return target.Destination{}, fmt.Errorf("unknown service %s", dst)
	}
	return d, nil
}

const (
	webAuthority = "web.shop.svc.cluster.local:80"
	v1Authority  = "web-v1.shop.svc.cluster.local:80"
	v2Authority  = "web-v2.shop.svc.cluster.local:80"
)

func backend(name string, weight uint32) route.Backend {
	return route.Backend{Namespace: "shop", Name: name, Port: 80, Authority: name + ".shop.svc.cluster.local:80", Weight: weight}
}

func webParent() route.Parent {
	return route.Parent{Namespace: "shop", Name: "web", Port: 80, Authority: webAuthority}
}

// splitTable is the seed's canary: one HTTPRoute sending w1/w2 to v1/v2.
func splitTable(w1, w2 uint32) *route.Table {
	return &route.Table{Parent: webParent(), HTTP: []route.HTTPRoute{{
		Meta:  route.Meta{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "shop", Name: "web-split"},
		Rules: []route.HTTPRule{{Backends: []route.Backend{backend("web-v1", w1), backend("web-v2", w2)}}},
	}}}
}

// versionServer answers every request with its version name.
func versionServer(t testing.TB, version string) string {
	t.Helper()
	return h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, version)
	}))
}

// routedMesh starts web (answering "web"), web-v1 and web-v2, and a proxy whose
// binding forwards to web; it returns the binding address and web's table.
func routedMesh(t testing.TB) (*meshResolver, *testProxy, *route.Current) {
	t.Helper()
	res := newMeshResolver()
	web := res.service(webAuthority, versionServer(t, "web"))
	res.service(v1Authority, versionServer(t, "v1"))
	res.service(v2Authority, versionServer(t, "v2"))
	tp := startProxyWith(t, Options{Discovery: res}, func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, webAuthority)
	return res, tp, web
}

func loadClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// call sends one request and returns the status and body.
func call(t testing.TB, c *http.Client, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return 0, "", nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func getReq(t testing.TB, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return call(t, c, req)
}

// TestRouteWeightedSplit: the seed's 90/10 canary over 2,000 requests.
func TestRouteWeightedSplit(t *testing.T) {
	_, tp, web := routedMesh(t)
	c := loadClient()
	if _, body, _ := getReq(t, c, "http://"+tp.bindings[0]+"/"); body != "web" {
		t.Fatalf("without a route table: got %q, want the Service's own backend", body)
	}
	web.Store(splitTable(90, 10))
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const n, workers = 2000, 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / workers {
				code, body, _ := getReq(t, c, fmt.Sprintf("http://%s/w%d", tp.bindings[0], w))
				mu.Lock()
				counts[fmt.Sprintf("%d %s", code, body)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	share := 100 * float64(counts["200 v2"]) / n
	t.Logf("2000 requests: %v; v2 share %.2f%%", counts, share)
	if counts["200 v1"]+counts["200 v2"] != n {
		t.Errorf("responses %v, want all 200 from v1 or v2", counts)
	}
	if share < 7 || share > 13 {
		t.Errorf("v2 got %.2f%% of requests, want 10±3", share)
	}
	m := tp.metricsText(t)
	for _, b := range []string{"web-v1", "web-v2"} {
		got := metricValue(t, m, "outbound_http_route_backend_requests_total", map[string]string{
			"parent_name": "web", "parent_namespace": "shop", "parent_port": "80", "route_name": "web-split",
			"route_kind": "HTTPRoute", "backend_name": b})
		if want := float64(counts["200 "+strings.TrimPrefix(b, "web-")]); got != want {
			t.Errorf("outbound_http_route_backend_requests_total{backend_name=%q} = %v, want %v", b, got, want)
		}
	}
	if got := metricValue(t, m, "outbound_http_route_request_statuses_total", map[string]string{"route_name": "web-split", "http_status": "200", "error": ""}); got != n {
		t.Errorf("outbound_http_route_request_statuses_total{http_status=200} = %v, want %d", got, n)
	}
}

// TestRouteWeightFlipUnderLoad: the seed's blue-green switch, applied while
// 100 requests per second flow: no request fails and the switch is
// complete within a second.
func TestRouteWeightFlipUnderLoad(t *testing.T) {
	_, tp, web := routedMesh(t)
	web.Store(splitTable(1, 0))
	c := loadClient()
	type result struct {
		start time.Time
		code  int
		body  string
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	const rps, total = 100, 300 // 3 s of load
	tick := time.NewTicker(time.Second / rps)
	defer tick.Stop()
	var flipped time.Time
	for i := range total {
		<-tick.C
		if i == total/3 {
			web.Store(splitTable(0, 1))
			flipped = time.Now()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			code, body, _ := getReq(t, c, "http://"+tp.bindings[0]+"/")
			mu.Lock()
			results = append(results, result{start, code, body})
			mu.Unlock()
		}()
	}
	wg.Wait()
	failed, lastV1 := 0, time.Duration(-1)
	byBody := map[string]int{}
	for _, r := range results {
		byBody[r.body]++
		if r.code != 200 {
			failed++
		}
		if r.body == "v1" && r.start.After(flipped) {
			lastV1 = max(lastV1, r.start.Sub(flipped))
		}
	}
	after := "none started after it"
	if lastV1 >= 0 {
		after = fmt.Sprintf("the last started %v after it", lastV1)
	}
	t.Logf("%d requests at %d/s, switch after %d: %v, %d failed; v1 responses: %s", total, rps, total/3, byBody, failed, after)
	if failed != 0 {
		t.Errorf("%d requests failed during the switch, want 0", failed)
	}
	if lastV1 > time.Second {
		t.Errorf("v1 still served a request started %v after the switch, want within 1s", lastV1)
	}
	if byBody["v1"] < total/3-5 || byBody["v2"] < 2*total/3-5 {
		t.Errorf("responses %v: want about a third from v1, two thirds from v2", byBody)
	}
}

// TestRouteHeaderAB: the seed's A/B test — a header sends requests to v2,
// others go to v1; a request no route matches goes to the Service itself.
func TestRouteHeaderAB(t *testing.T) {
	_, tp, web := routedMesh(t)
	web.Store(&route.Table{Parent: webParent(), HTTP: []route.HTTPRoute{{
		Meta: route.Meta{Kind: "HTTPRoute", Namespace: "shop", Name: "web-ab"},
		Rules: []route.HTTPRule{
			{Matches: []route.HTTPMatch{{Path: &route.PathMatch{Kind: route.PathPrefix, Value: "/app"},
				Headers: []route.ValueMatch{{Name: "x-ab-test", Value: "b"}}}},
				Backends: []route.Backend{backend("web-v2", 1)}},
			{Matches: []route.HTTPMatch{{Path: &route.PathMatch{Kind: route.PathPrefix, Value: "/app"}}},
				Backends: []route.Backend{backend("web-v1", 1)}},
			// a backendRef the control plane could not resolve (no authority)
			{Matches: []route.HTTPMatch{{Path: &route.PathMatch{Kind: route.PathExact, Value: "/invalid"}}},
				Backends: []route.Backend{{Namespace: "shop", Name: "not-a-service", Weight: 1}}},
		},
	}}})
	c := loadClient()
	base := "http://" + tp.bindings[0]
	tests := []struct {
		path string
		hdr  []string
		want string
	}{
		{"/app/cart", []string{"X-AB-Test", "b"}, "v2"},
		{"/app/cart", []string{"x-ab-test", "a"}, "v1"},
		{"/app", nil, "v1"},
		{"/application", []string{"x-ab-test", "b"}, "web"},
		{"/", nil, "web"},
		{"/invalid", nil, "500"},
	}
	for _, tt := range tests {
		for range 20 {
			code, got, h := getReq(t, c, base+tt.path, tt.hdr...)
			if tt.want == "500" {
				if code != 500 || h.Get(compat.HeaderProxyError) == "" {
					t.Fatalf("GET %s: %d, want 500 with l5d-proxy-error", tt.path, code)
				}
				continue
			}
			if code != 200 || got != tt.want {
				t.Fatalf("GET %s %v: %d %q, want 200 %q", tt.path, tt.hdr, code, got, tt.want)
			}
		}
	}
}

// TestRouteFilters: redirect, URL rewrite, request and response header
// modifiers (rule and backend level), as a client sees them.
func TestRouteFilters(t *testing.T) {
	res := newMeshResolver()
	echo := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Internal", "secret")
		fmt.Fprintf(w, "host=%s path=%s added=%s gone=%q backend=%s", r.Host, r.URL.RequestURI(),
			r.Header.Get("X-Added"), r.Header.Get("X-Gone"), r.Header.Get("X-Backend"))
	}))
	web := res.service(webAuthority, echo)
	res.service(v1Authority, echo)
	tp := startProxyWith(t, Options{Discovery: res}, func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, webAuthority)
	v1 := backend("web-v1", 1)
	v1.Filters = []route.Filter{{Kind: route.RequestHeaderModifier, RequestHeaders: &route.HeaderModifier{Set: []route.Header{{Name: "X-Backend", Value: "v1"}}}}}
	prefix := func(v string) []route.HTTPMatch {
		return []route.HTTPMatch{{Path: &route.PathMatch{Kind: route.PathPrefix, Value: v}}}
	}
	web.Store(&route.Table{Parent: webParent(), HTTP: []route.HTTPRoute{{
		Meta: route.Meta{Kind: "HTTPRoute", Namespace: "shop", Name: "web-filters"},
		Rules: []route.HTTPRule{
			{Matches: prefix("/old"), Filters: []route.Filter{{Kind: route.RequestRedirect, Redirect: &route.Redirect{
				Hostname: "new.example", Path: &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: "/new"}, StatusCode: 301}}}},
			{Matches: prefix("/api/v1"), Backends: []route.Backend{v1}, Filters: []route.Filter{
				{Kind: route.URLRewrite, Rewrite: &route.Rewrite{Hostname: "internal.web",
					Path: &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: "/v1"}}},
				{Kind: route.RequestHeaderModifier, RequestHeaders: &route.HeaderModifier{
					Add: []route.Header{{Name: "X-Added", Value: "yes"}}, Remove: []string{"X-Gone"}}},
				{Kind: route.ResponseHeaderModifier, ResponseHeaders: &route.HeaderModifier{
					Set: []route.Header{{Name: "X-Served-By", Value: "weft"}}, Remove: []string{"X-Internal"}}},
			}},
		},
	}}})
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code, _, h := getReq(t, noRedirect, "http://"+tp.bindings[0]+"/old/page?q=1", "Host", "web.shop.svc.cluster.local")
	if code != 301 || h.Get("Location") != "http://new.example/new/page?q=1" {
		t.Errorf("redirect: %d Location %q, want 301 http://new.example/new/page?q=1", code, h.Get("Location"))
	}
	code, body, h := getReq(t, noRedirect, "http://"+tp.bindings[0]+"/api/v1/items?id=7", "X-Gone", "bye")
	want := `host=internal.web path=/v1/items?id=7 added=yes gone="" backend=v1`
	if code != 200 || body != want {
		t.Errorf("rewrite: %d %q, want 200 %q", code, body, want)
	}
	if h.Get("X-Served-By") != "weft" || h.Get("X-Internal") != "" {
		t.Errorf("response headers %v: want X-Served-By set and X-Internal removed", h)
	}
}

// countingServer answers with name and counts requests; fail decides, per
// request number (1-based), whether to answer 503.
func countingServer(t testing.TB, name string, n *atomic.Int64, fail func(int64) bool) string {
	t.Helper()
	return h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if fail != nil && fail(n.Add(1)) {
			http.Error(w, "injected failure", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s %d", name, len(body))
	}))
}

// TestRouteInvalidTableKeepsLastGood: a table that does not compile (a bad
// regular expression the control plane should have refused) is not
// applied at all: the last good table stays in use.
func TestRouteInvalidTableKeepsLastGood(t *testing.T) {
	_, tp, web := routedMesh(t)
	c := loadClient()
	url := "http://" + tp.bindings[0] + "/"
	bad := splitTable(1, 0)
	bad.HTTP[0].Rules[0].Matches = []route.HTTPMatch{{Path: &route.PathMatch{Kind: route.PathRegex, Value: "(["}}}
	web.Store(bad)
	if _, body, _ := getReq(t, c, url); body != "web" {
		t.Errorf("invalid first table: served by %q, want the Service itself", body)
	}
	web.Store(splitTable(0, 1))
	if _, body, _ := getReq(t, c, url); body != "v2" {
		t.Fatalf("good table: served by %q, want v2", body)
	}
	web.Store(bad)
	for range 10 {
		if _, body, _ := getReq(t, c, url); body != "v2" {
			t.Fatalf("after an invalid table: served by %q, want v2 from the last good table", body)
		}
	}
}
