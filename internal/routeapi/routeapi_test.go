package routeapi

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/route"
)

func full() *route.Table {
	b := route.Backend{Namespace: "ns", Name: "v2", Port: 8080, Authority: "v2.ns.svc.cluster.local:8080", Weight: 90,
		Filters: []route.Filter{{Kind: route.RequestHeaderModifier, RequestHeaders: &route.HeaderModifier{Set: []route.Header{{Name: "x-v", Value: "2"}}}}}}
	retry := &route.Retry{HTTPStatuses: []uint16{502, 503}, GRPCCodes: []uint32{14}, Limit: 2, Timeout: 300 * time.Millisecond, Backoff: 25 * time.Millisecond}
	return &route.Table{
		Parent:   route.Parent{Namespace: "ns", Name: "web", Port: 80, Authority: "web.ns.svc.cluster.local:80"},
		Defaults: route.Policy{Timeouts: route.Timeouts{Request: 5 * time.Second, Backend: time.Second, Idle: time.Minute}, Retry: retry},
		Accrual:  &route.FailureAccrual{MaxFailures: 7, MinPenalty: time.Second, MaxPenalty: time.Minute, JitterRatio: 0.5},
		HTTP: []route.HTTPRoute{{
			Meta:      route.Meta{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "ns", Name: "r", Created: time.Unix(1700000000, 0).UTC()},
			Hostnames: []string{"web.example.com"},
			Policy:    route.Policy{Retry: retry},
			Rules: []route.HTTPRule{{
				Matches: []route.HTTPMatch{
					{Path: &route.PathMatch{Kind: route.PathExact, Value: "/x"}, Method: "GET",
						Headers: []route.ValueMatch{{Name: "h", Value: "v"}}, Query: []route.ValueMatch{{Name: "q", Value: "^a.*", Regex: true}}},
					{Path: &route.PathMatch{Kind: route.PathRegex, Value: "/y/.*"}},
					{Path: &route.PathMatch{Kind: route.PathPrefix, Value: "/"}},
				},
				Filters: []route.Filter{
					{Kind: route.ResponseHeaderModifier, ResponseHeaders: &route.HeaderModifier{Add: []route.Header{{Name: "a", Value: "b"}}, Remove: []string{"c"}}},
					{Kind: route.RequestRedirect, Redirect: &route.Redirect{Scheme: "https", Hostname: "h", Port: 8443, StatusCode: 301,
						Path: &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: "/new"}}},
					{Kind: route.URLRewrite, Rewrite: &route.Rewrite{Hostname: "h2", Path: &route.PathModifier{Kind: route.ReplaceFullPath, Value: "/z"}}},
					{Kind: route.RequestMirror, Mirror: &route.Mirror{Backend: route.Backend{Namespace: "ns", Name: "shadow", Port: 80,
						Authority: "shadow.ns.svc.cluster.local:80", Weight: 1}, Percent: 12.5}},
				},
				Backends: []route.Backend{b, {Namespace: "ns", Name: "v1", Port: 80, Authority: "v1.ns.svc.cluster.local:80", Weight: 10}},
				Timeouts: route.Timeouts{Request: 2 * time.Second, Backend: 500 * time.Millisecond},
				Retry:    retry,
			}},
		}},
		GRPC: []route.GRPCRoute{{
			Meta: route.Meta{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute", Namespace: "ns", Name: "g"},
			Rules: []route.GRPCRule{{Matches: []route.GRPCMatch{{Service: "pkg.Svc", Method: "Get", Headers: []route.ValueMatch{{Name: "x", Value: "y"}}},
				{Service: "pkg\\..*", Regex: true}}, Backends: []route.Backend{b}}},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   *route.Table
	}{{"not found", nil}, {"empty", &route.Table{Parent: route.Parent{Namespace: "a", Name: "b", Port: 1}}}, {"everything", full()}} {
		t.Run(tt.name, func(t *testing.T) {
			w := Encode(tt.in)
			b, err := proto.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			var back policyv1.OutboundPolicy
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			got, err := Decode(&back)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.in, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRefusesWhatItCannotUse(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*policyv1.OutboundPolicy)
		want string
	}{
		{"port", func(p *policyv1.OutboundPolicy) { p.Parent.Port = 70000 }, "port 70000"},
		{"mirror percent", func(p *policyv1.OutboundPolicy) {
			p.HttpRoutes[0].Rules[0].Filters[3].GetRequestMirror().Percent = 150
		}, "mirror percent"},
		{"empty filter", func(p *policyv1.OutboundPolicy) {
			p.HttpRoutes[0].Rules[0].Filters = append(p.HttpRoutes[0].Rules[0].Filters, &policyv1.Filter{})
		}, "unknown kind"},
		{"retry status", func(p *policyv1.OutboundPolicy) { p.Defaults.Retry.HttpStatuses = []uint32{999} }, "retry status 999"},
		{"path kind", func(p *policyv1.OutboundPolicy) { p.HttpRoutes[0].Rules[0].Matches[0].Path.Kind = 9 }, "path match kind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := Encode(full())
			tt.edit(w)
			if _, err := Decode(w); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
