package policyclient

import (
	"reflect"
	"testing"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
)

func TestRoundTrip(t *testing.T) {
	n, err := authz.ParseNetwork("198.18.0.0/16", "198.18.9.0/24")
	if err != nil {
		t.Fatal(err)
	}
	in := &authz.PortPolicy{
		Server:   authz.Meta{Group: "policy.linkerd.io", Kind: "server", Name: "web"},
		Protocol: authz.ProtocolHTTP2, Default: authz.Audit, ProbePaths: []string{"/ready"},
		Authorizations: []authz.Authorization{{Meta: authz.Meta{Name: "a"}, Networks: []authz.Network{n}, Authn: authz.MeshTLS, Identities: []string{"*"}}},
		Routes: []authz.Route{{Meta: authz.Meta{Name: "r"}, Matches: []authz.RouteMatch{
			{Path: &authz.PathMatch{Kind: authz.PathRegex, Value: "/x/.*"}, Method: "GET", Headers: []authz.HeaderMatch{{Name: "x", Value: "y", Regex: true}}},
			{},
		}, Authorizations: []authz.Authorization{{Meta: authz.Meta{Name: "b"}, Authn: authz.Unauthenticated}}}},
		RateLimit: &authz.RateLimit{Meta: authz.Meta{Name: "rl"}, Total: 20, Identity: 5, Overrides: []authz.RateOverride{{Clients: []string{"c"}, RequestsPerSecond: 10}}},
	}
	out, err := FromProto(ToProto(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestFromProtoRefusesMalformed(t *testing.T) {
	tests := map[string]*policyv1.InboundPolicy{
		"unknown default": {DefaultPolicy: "allow"},
		"bad cidr":        {Authorizations: []*policyv1.InboundAuthorization{{Networks: []*policyv1.InboundNetwork{{Cidr: "198.18.0.0/33"}}}}},
		"bad except":      {Authorizations: []*policyv1.InboundAuthorization{{Networks: []*policyv1.InboundNetwork{{Cidr: "0.0.0.0/0", Except: []string{"x"}}}}}},
		"bad path kind":   {Routes: []*policyv1.InboundRoute{{Matches: []*policyv1.InboundRouteMatch{{Path: &policyv1.InboundPathMatch{Kind: 9}}}}}},
	}
	for name, m := range tests {
		if _, err := FromProto(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
