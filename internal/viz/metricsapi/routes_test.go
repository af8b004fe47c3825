package metricsapi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// promFake answers each query with the vector of the first rule whose
// substring it contains, and records the queries (the Service queries
// concurrently).
type promFake struct {
	rules   []promRule
	mu      sync.Mutex
	queries []string
}

type promRule struct {
	contains string
	vec      model.Vector
}

func (p *promFake) Query(_ context.Context, q string, _ time.Time) (model.Vector, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queries = append(p.queries, q)
	for _, r := range p.rules {
		if strings.Contains(q, r.contains) {
			return r.vec, nil
		}
	}
	return nil, nil
}

func sample(v float64, labels ...string) *model.Sample {
	m := model.Metric{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[model.LabelName(labels[i])] = model.LabelValue(labels[i+1])
	}
	return &model.Sample{Metric: m, Value: model.SampleValue(v)}
}

func TestRoutes(t *testing.T) {
	parent := []string{"parent_namespace", "shop", "parent_name", "api", "parent_port", "80"}
	books := append(append([]string{}, parent...), "route_kind", "HTTPRoute", "route_namespace", "shop", "route_name", "books")
	def := append(append([]string{}, parent...), "route_kind", "default", "route_name", "http")
	prom := &promFake{rules: []promRule{
		{"histogram_quantile(0.5, sum(rate(outbound_http_route", model.Vector{sample(0.025*1000, books...)}},
		{"histogram_quantile(0.99, sum(rate(outbound_http_route", model.Vector{sample(0.3*1000, books...)}},
		{"increase(outbound_http_route_request_statuses_total", model.Vector{
			sample(540, append(append([]string{}, books...), "http_status", "200")...),
			sample(60, append(append([]string{}, books...), "http_status", "503")...),
			sample(6, append(append([]string{}, books...), "http_status", "", "error", "FAIL_FAST")...),
			sample(60, append(append([]string{}, def...), "http_status", "404")...),
		}},
	}}
	s := &Service{Prom: prom, Now: time.Now}
	resp, err := s.Routes(context.Background(), RoutesRequest{Kind: KindDeployment, Namespace: "shop", Name: "web", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Rows) != 2 {
		t.Fatalf("rows = %+v, want books and [DEFAULT]", resp.Rows)
	}
	b, d := resp.Rows[0], resp.Rows[1]
	if b.Route != "books" || b.Parent != "api" || b.ParentPort != "80" || b.RouteKind != "HTTPRoute" || b.Requests != 606 || b.Successes != 540 {
		t.Errorf("books row = %+v", b)
	}
	if got, want := *b.RPS, 606.0/60; got != want {
		t.Errorf("books rps = %v, want %v", got, want)
	}
	if b.LatencyP50Ms == nil || *b.LatencyP50Ms != 25 || b.LatencyP99Ms == nil || *b.LatencyP99Ms != 300 || b.LatencyP95Ms != nil {
		t.Errorf("books latency p50 %v p95 %v p99 %v, want 25, none, 300", b.LatencyP50Ms, b.LatencyP95Ms, b.LatencyP99Ms)
	}
	if d.Route != DefaultRouteName || d.Requests != 60 || *d.SuccessRate != 1 {
		t.Errorf("default row = %+v, want [DEFAULT] with 60 successes (404 is not a failure)", d)
	}
	for _, q := range prom.queries {
		if strings.Contains(q, "outbound_") && !strings.Contains(q, `{deployment="web", namespace="shop"}`) {
			t.Errorf("query %q does not select deploy/web's proxies", q)
		}
	}

	// A service: every client's routes with the Service as parent.
	prom.queries = nil
	if _, err := s.Routes(context.Background(), RoutesRequest{Kind: KindService, Namespace: "shop", Name: "api"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range prom.queries {
		if !strings.Contains(q, `{parent_name="api", parent_namespace="shop"}`) {
			t.Errorf("query %q does not select routes of svc/api", q)
		}
	}

	for _, bad := range []RoutesRequest{{Kind: KindDeployment, Namespace: "shop"}, {Kind: KindNamespace, Name: "shop"}, {Kind: KindPod, Name: "x"}} {
		var br *BadRequestError
		if _, err := s.Routes(context.Background(), bad); !errors.As(err, &br) {
			t.Errorf("Routes(%+v) = %v, want a bad request", bad, err)
		}
	}
}

func TestAuthz(t *testing.T) {
	srv := []string{"srv_kind", "server", "srv_name", "web-http"}
	prom := &promFake{rules: []promRule{
		{"inbound_http_authz_allow_total", model.Vector{
			sample(120, append(append([]string{}, srv...), "route_kind", "HTTPRoute", "route_name", "public", "authz_kind", "authorizationpolicy", "authz_name", "public-all")...),
			sample(30, append(append([]string{}, srv...), "route_kind", "HTTPRoute", "route_name", "admin", "authz_kind", "authorizationpolicy", "authz_name", "admin-client")...),
		}},
		{"inbound_http_authz_deny_total", model.Vector{
			sample(12, append(append([]string{}, srv...), "route_kind", "HTTPRoute", "route_name", "admin")...),
		}},
		{"inbound_tcp_authz_deny_total", model.Vector{sample(6, "srv_kind", "default", "srv_name", "deny")}},
	}}
	s := &Service{Prom: prom, Now: time.Now}
	resp, err := s.Authz(context.Background(), AuthzRequest{Kind: KindDeployment, Namespace: "shop", Name: "web", Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := []AuthzRow{
		{Protocol: "http", Server: "server/web-http", Route: "httproute/admin", Denied: 12, DeniedRPS: 0.2},
		{Protocol: "http", Server: "server/web-http", Route: "httproute/admin", Authorization: "authorizationpolicy/admin-client", Allowed: 30, AllowedRPS: 0.5},
		{Protocol: "http", Server: "server/web-http", Route: "httproute/public", Authorization: "authorizationpolicy/public-all", Allowed: 120, AllowedRPS: 2},
		{Protocol: "tcp", Server: "default/deny", Denied: 6, DeniedRPS: 0.1},
	}
	if len(resp.Rows) != len(want) {
		t.Fatalf("rows = %+v, want %+v", resp.Rows, want)
	}
	for i := range want {
		if resp.Rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, resp.Rows[i], want[i])
		}
	}
	var br *BadRequestError
	if _, err := s.Authz(context.Background(), AuthzRequest{Kind: KindService, Namespace: "shop", Name: "api"}); !errors.As(err, &br) {
		t.Errorf("authz of a service = %v, want a bad request", err)
	}
}
