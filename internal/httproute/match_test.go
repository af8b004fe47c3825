package httproute

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/route"
)

func meta(name string, age int) route.Meta {
	return route.Meta{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "ns", Name: name,
		Created: time.Unix(1000, 0).Add(time.Duration(age) * time.Second)}
}

// one returns an HTTPRoute with one rule and one match.
func one(name string, age int, m route.HTTPMatch) route.HTTPRoute {
	return route.HTTPRoute{Meta: meta(name, age), Rules: []route.HTTPRule{{Matches: []route.HTTPMatch{m}}}}
}

func path(k route.PathKind, v string) *route.PathMatch { return &route.PathMatch{Kind: k, Value: v} }

func req(method, target string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func matched(t *testing.T, ct *Table, r *http.Request) string {
	t.Helper()
	m := ct.Match(r)
	if m.Rule == nil {
		t.Fatal("Match returned no rule")
	}
	if m.Rule.Kind == KindDefault {
		return "default"
	}
	return m.Rule.Meta.Name
}

func TestHTTPMatchAndPrecedence(t *testing.T) {
	tbl := &route.Table{HTTP: []route.HTTPRoute{
		one("prefix-api", 5, route.HTTPMatch{Path: path(route.PathPrefix, "/api")}),
		one("prefix-api-v1", 6, route.HTTPMatch{Path: path(route.PathPrefix, "/api/v1/")}),
		one("exact-api-v1-x", 7, route.HTTPMatch{Path: path(route.PathExact, "/api/v1/x")}),
		one("regex-img", 1, route.HTTPMatch{Path: path(route.PathRegex, "/img/[0-9]+\\.png")}),
		one("post-api", 9, route.HTTPMatch{Path: path(route.PathPrefix, "/api"), Method: "POST"}),
		one("hdr-api", 10, route.HTTPMatch{Path: path(route.PathPrefix, "/api"),
			Headers: []route.ValueMatch{{Name: "x-canary", Value: "true"}}}),
		one("hdr2-api", 11, route.HTTPMatch{Path: path(route.PathPrefix, "/api"),
			Headers: []route.ValueMatch{{Name: "X-Canary", Value: "true"}, {Name: "x-user", Value: "a.*", Regex: true}}}),
		one("query-api", 12, route.HTTPMatch{Path: path(route.PathPrefix, "/api"),
			Query: []route.ValueMatch{{Name: "debug", Value: "1"}}}),
		// equal precedence: the older wins, then namespace/name
		one("old-shop", 2, route.HTTPMatch{Path: path(route.PathPrefix, "/shop")}),
		one("new-shop", 3, route.HTTPMatch{Path: path(route.PathPrefix, "/shop")}),
		one("b-cart", 4, route.HTTPMatch{Path: path(route.PathPrefix, "/cart")}),
		one("a-cart", 4, route.HTTPMatch{Path: path(route.PathPrefix, "/cart")}),
	}}
	ct, err := Compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		r    *http.Request
		want string
	}{
		{req("GET", "/api"), "prefix-api"},
		{req("GET", "/api/"), "prefix-api"},
		{req("GET", "/apix"), "default"}, // segment-wise prefix
		{req("GET", "/api/v1"), "prefix-api-v1"},
		{req("GET", "/api/v1/y"), "prefix-api-v1"},
		{req("GET", "/api/v1/x"), "exact-api-v1-x"},
		{req("GET", "/api/v1/x/"), "prefix-api-v1"},
		{req("GET", "/img/12.png"), "regex-img"},
		{req("GET", "/img/12.png/more"), "default"}, // regex matches the whole path
		{req("GET", "/img/a.png"), "default"},
		{req("POST", "/api/z"), "post-api"}, // method beats headers
		{req("POST", "/api/z", "x-canary", "true"), "post-api"},
		{req("GET", "/api/z", "X-CANARY", "true"), "hdr-api"},
		{req("GET", "/api/z", "x-canary", "false"), "prefix-api"},
		{req("GET", "/api/z", "x-canary", "true", "x-user", "alice"), "hdr2-api"},
		{req("GET", "/api/z", "x-canary", "true", "x-user", "bob"), "hdr-api"},
		{req("GET", "/api/z?debug=1"), "query-api"},
		{req("GET", "/api/z?Debug=1"), "prefix-api"}, // query names are exact
		{req("GET", "/shop/1"), "old-shop"},
		{req("GET", "/cart"), "a-cart"},
		{req("GET", "/"), "default"},
	}
	for _, tt := range tests {
		if got := matched(t, ct, tt.r); got != tt.want {
			t.Errorf("%s %s %v: matched %q, want %q", tt.r.Method, tt.r.URL, tt.r.Header, got, tt.want)
		}
	}
}

func TestHostnames(t *testing.T) {
	tbl := &route.Table{HTTP: []route.HTTPRoute{
		{Meta: meta("any", 0), Rules: []route.HTTPRule{{}}},
		{Meta: meta("wild", 1), Hostnames: []string{"*.example.com"}, Rules: []route.HTTPRule{{}}},
		{Meta: meta("exact", 2), Hostnames: []string{"api.Example.com"}, Rules: []route.HTTPRule{{}}},
	}}
	ct, err := Compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{"api.example.com:8080", "exact"},
		{"www.example.com", "wild"},
		{"a.b.example.com", "wild"},
		{"example.com", "any"},
		{"web.ns.svc.cluster.local:80", "any"},
	}
	for _, tt := range tests {
		r := req("GET", "/")
		r.Host = tt.host
		if got := matched(t, ct, r); got != tt.want {
			t.Errorf("host %s: matched %q, want %q", tt.host, got, tt.want)
		}
	}
}

func TestGRPCMatch(t *testing.T) {
	g := func(name string, age int, m route.GRPCMatch) route.GRPCRoute {
		return route.GRPCRoute{Meta: route.Meta{Kind: "GRPCRoute", Name: name, Created: time.Unix(int64(age), 0)},
			Rules: []route.GRPCRule{{Matches: []route.GRPCMatch{m}}}}
	}
	tbl := &route.Table{
		GRPC: []route.GRPCRoute{
			g("svc", 1, route.GRPCMatch{Service: "emojivoto.v1.VotingService"}),
			g("method", 2, route.GRPCMatch{Service: "emojivoto.v1.VotingService", Method: "VoteDoughnut"}),
			g("regex", 3, route.GRPCMatch{Service: "grpc\\.health\\..*", Regex: true}),
			g("hdr", 4, route.GRPCMatch{Service: "emojivoto.v1.VotingService", Headers: []route.ValueMatch{{Name: "x-a", Value: "1"}}}),
		},
		HTTP: []route.HTTPRoute{one("http-all", 0, route.HTTPMatch{})},
	}
	ct, err := Compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	grpc := func(p string, hdr ...string) *http.Request {
		return req("POST", p, append([]string{"Content-Type", "application/grpc+proto"}, hdr...)...)
	}
	tests := []struct {
		r    *http.Request
		want string
	}{
		{grpc("/emojivoto.v1.VotingService/VoteDoughnut"), "method"},
		{grpc("/emojivoto.v1.VotingService/VotePizza"), "svc"},
		{grpc("/emojivoto.v1.VotingService/VotePizza", "x-a", "1"), "hdr"},
		{grpc("/grpc.health.v1.Health/Check"), "regex"},
		{grpc("/other.Svc/M"), "http-all"},                                    // falls through to HTTPRoutes
		{req("POST", "/emojivoto.v1.VotingService/VoteDoughnut"), "http-all"}, // not gRPC
		{grpc("/bad-path"), "http-all"},
	}
	for _, tt := range tests {
		if got := matched(t, ct, tt.r); got != tt.want {
			t.Errorf("%s: matched %q, want %q", tt.r.URL.Path, got, tt.want)
		}
	}
}

func TestPolicyFallback(t *testing.T) {
	svcRetry := &route.Retry{Limit: 1}
	routeRetry := &route.Retry{Limit: 2}
	tbl := &route.Table{
		Defaults: route.Policy{Timeouts: route.Timeouts{Request: 5 * time.Second, Idle: time.Minute}, Retry: svcRetry},
		HTTP: []route.HTTPRoute{
			{Meta: meta("annotated", 0), Policy: route.Policy{Timeouts: route.Timeouts{Backend: time.Second}, Retry: routeRetry},
				Rules: []route.HTTPRule{{Matches: []route.HTTPMatch{{Path: path(route.PathPrefix, "/a")}}, Timeouts: route.Timeouts{Request: 2 * time.Second}}}},
			{Meta: meta("bare", 1), Rules: []route.HTTPRule{{Matches: []route.HTTPMatch{{Path: path(route.PathPrefix, "/b")}}}}},
		},
	}
	ct, err := Compile(tbl)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path  string
		want  route.Timeouts
		retry *route.Retry
	}{
		{"/a", route.Timeouts{Request: 2 * time.Second, Backend: time.Second, Idle: time.Minute}, routeRetry},
		{"/b", route.Timeouts{Request: 5 * time.Second, Idle: time.Minute}, svcRetry},
		{"/c", route.Timeouts{Request: 5 * time.Second, Idle: time.Minute}, svcRetry},
	}
	for _, tt := range tests {
		rule := ct.Match(req("GET", tt.path)).Rule
		if rule.Timeouts != tt.want || rule.Retry != tt.retry {
			t.Errorf("%s: timeouts %+v retry %p, want %+v %p", tt.path, rule.Timeouts, rule.Retry, tt.want, tt.retry)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		m    route.HTTPMatch
		want string
	}{
		{"bad path regex", route.HTTPMatch{Path: path(route.PathRegex, "([")}, "invalid regular expression"},
		{"huge regex", route.HTTPMatch{Path: path(route.PathRegex, strings.Repeat("a", maxRegexLen+1))}, "exceeds"},
		{"bad header regex", route.HTTPMatch{Headers: []route.ValueMatch{{Name: "x", Value: "*", Regex: true}}}, "invalid regular expression"},
	}
	for _, tt := range tests {
		_, err := Compile(&route.Table{HTTP: []route.HTTPRoute{one("r", 0, tt.m)}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

func TestPickBackendWeights(t *testing.T) {
	rule := newRule(KindHTTP, route.Meta{}, nil, []route.Backend{
		{Name: "v1", Weight: 90}, {Name: "v2", Weight: 10}, {Name: "off", Weight: 0},
	}, route.Timeouts{}, nil, route.Policy{}, route.Policy{})
	counts := map[string]int{}
	const n = 100000
	for range n {
		b, ok := rule.PickBackend()
		if !ok {
			t.Fatal("no backend picked")
		}
		counts[b.Name]++
	}
	if counts["off"] != 0 {
		t.Errorf("weight-0 backend got %d requests", counts["off"])
	}
	if share := float64(counts["v2"]) / n; share < 0.09 || share > 0.11 {
		t.Errorf("v2 share %.3f, want 0.10±0.01 (%v)", share, counts)
	}
	zero := newRule(KindHTTP, route.Meta{}, nil, []route.Backend{{Name: "a"}}, route.Timeouts{}, nil, route.Policy{}, route.Policy{})
	if _, ok := zero.PickBackend(); ok || !zero.Unweighted {
		t.Errorf("all-zero weights: ok=%v Unweighted=%v, want false, true", ok, zero.Unweighted)
	}
}

func TestCacheByPointer(t *testing.T) {
	var c Cache
	a := &route.Table{HTTP: []route.HTTPRoute{one("a", 0, route.HTTPMatch{})}}
	ca1, _ := c.Compile(a)
	ca2, _ := c.Compile(a)
	if ca1 != ca2 {
		t.Error("same table compiled twice")
	}
	b := &route.Table{HTTP: []route.HTTPRoute{one("b", 0, route.HTTPMatch{})}}
	if cb, _ := c.Compile(b); cb == ca1 || cb.Source != b {
		t.Error("a new table pointer did not get its own compiled table")
	}
}

// BenchmarkMatch: a table of 50 routes with prefixes, headers and a
// regex; the request matches near the end of the precedence order.
func BenchmarkMatch(b *testing.B) {
	tbl := &route.Table{}
	for i := range 50 {
		tbl.HTTP = append(tbl.HTTP, one(fmt.Sprintf("r%d", i), i, route.HTTPMatch{
			Path:    path(route.PathPrefix, fmt.Sprintf("/svc%d", i)),
			Headers: []route.ValueMatch{{Name: "x-env", Value: "prod"}}}))
	}
	tbl.HTTP = append(tbl.HTTP, one("re", 99, route.HTTPMatch{Path: path(route.PathRegex, "/items/[0-9]+")}))
	ct, err := Compile(tbl)
	if err != nil {
		b.Fatal(err)
	}
	r := req("GET", "/items/12345", "X-Env", "prod")
	b.ReportAllocs()
	for b.Loop() {
		if ct.Match(r).Rule.Meta.Name != "re" {
			b.Fatal("wrong match")
		}
	}
}
