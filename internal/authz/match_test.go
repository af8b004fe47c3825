package authz

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

const (
	webID  = "web.shop.serviceaccount.identity.linkerd.cluster.local"
	apiID  = "api.shop.serviceaccount.identity.linkerd.cluster.local"
	evilID = "web.other.serviceaccount.identity.linkerd.cluster.local"
)

var (
	inCluster  = netip.MustParseAddr("198.18.3.4")
	outCluster = netip.MustParseAddr("203.0.113.9")
	cluster    = mustNetworks("198.18.0.0/16,198.19.0.0/16,fd00::/8")
)

func mustNetworks(s string) []Network {
	n, err := ParseNetworks(s)
	if err != nil {
		panic(err)
	}
	return n
}

func compile(t *testing.T, p *PortPolicy) *Policy {
	t.Helper()
	c, err := Compile(p, cluster)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func TestDefaultPolicies(t *testing.T) {
	clients := map[string]Client{
		"cluster-plain":  {Addr: inCluster},
		"cluster-mtls":   {Addr: inCluster, Identity: webID},
		"external-plain": {Addr: outCluster},
		"external-mtls":  {Addr: outCluster, Identity: webID},
		"v6-cluster":     {Addr: netip.MustParseAddr("fd00::1"), Identity: webID},
	}
	type want struct{ allowed, audit bool }
	tests := []struct {
		policy DefaultPolicy
		want   map[string]want
	}{
		{AllUnauthenticated, map[string]want{"cluster-plain": {true, false}, "cluster-mtls": {true, false}, "external-plain": {true, false}, "external-mtls": {true, false}, "v6-cluster": {true, false}}},
		{AllAuthenticated, map[string]want{"cluster-plain": {}, "cluster-mtls": {true, false}, "external-plain": {}, "external-mtls": {true, false}, "v6-cluster": {true, false}}},
		{ClusterUnauthenticated, map[string]want{"cluster-plain": {true, false}, "cluster-mtls": {true, false}, "external-plain": {}, "external-mtls": {}, "v6-cluster": {true, false}}},
		{ClusterAuthenticated, map[string]want{"cluster-plain": {}, "cluster-mtls": {true, false}, "external-plain": {}, "external-mtls": {}, "v6-cluster": {true, false}}},
		{Deny, map[string]want{"cluster-plain": {}, "cluster-mtls": {}, "external-plain": {}, "external-mtls": {}, "v6-cluster": {}}},
		// audit: nothing authorizes, everything is let through and marked.
		{Audit, map[string]want{"cluster-plain": {true, true}, "cluster-mtls": {true, true}, "external-plain": {true, true}, "external-mtls": {true, true}, "v6-cluster": {true, true}}},
	}
	for _, tt := range tests {
		p := compile(t, ForDefault(tt.policy, nil))
		for name, c := range clients {
			w := tt.want[name]
			for kind, got := range map[string]Decision{"tcp": p.CheckConn(c), "http": p.CheckRequest(c, "GET", "/", nil)} {
				if got.Allowed != w.allowed || got.Audit != w.audit {
					t.Errorf("%s %s %s: allowed=%v audit=%v, want %v %v", tt.policy, name, kind, got.Allowed, got.Audit, w.allowed, w.audit)
				}
				if got.Server != DefaultMeta(string(tt.policy)) {
					t.Errorf("%s %s: server %+v", tt.policy, name, got.Server)
				}
				if got.Allowed && got.Authz != DefaultMeta(string(tt.policy)) {
					t.Errorf("%s %s: authz %+v, want the default policy's", tt.policy, name, got.Authz)
				}
			}
		}
	}
}

func TestAuditCountsWouldBeDenials(t *testing.T) {
	// A Server with accessPolicy audit and one authorization: the
	// authorized client is allowed by it, anyone else by "audit".
	p := compile(t, &PortPolicy{Server: Meta{"policy.linkerd.io", "server", "web"}, Default: Audit, Authorizations: []Authorization{
		{Meta: Meta{"policy.linkerd.io", "authorizationpolicy", "web-ok"}, Authn: MeshTLS, Identities: []string{webID}},
	}})
	if d := p.CheckConn(Client{Addr: inCluster, Identity: webID}); !d.Allowed || d.Audit || d.Authz.Name != "web-ok" {
		t.Errorf("authorized: %+v", d)
	}
	if d := p.CheckConn(Client{Addr: inCluster, Identity: apiID}); !d.Allowed || !d.Audit || d.Authz != AuditAuthz {
		t.Errorf("unauthorized under audit: %+v, want allowed by audit", d)
	}
}

func TestRequireIdentity(t *testing.T) {
	tests := []struct{ in, want DefaultPolicy }{
		{AllUnauthenticated, AllAuthenticated}, {ClusterUnauthenticated, ClusterAuthenticated},
		{AllAuthenticated, AllAuthenticated}, {ClusterAuthenticated, ClusterAuthenticated}, {Deny, Deny}, {Audit, Audit},
	}
	for _, tt := range tests {
		if got := RequireIdentity(tt.in); got != tt.want {
			t.Errorf("RequireIdentity(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseDefaultPolicy(t *testing.T) {
	for _, p := range DefaultPolicies {
		if got, err := ParseDefaultPolicy(string(p)); err != nil || got != p {
			t.Errorf("ParseDefaultPolicy(%s) = %s, %v", p, got, err)
		}
	}
	if got, _ := ParseDefaultPolicy(""); got != AllUnauthenticated {
		t.Errorf("empty = %s, want all-unauthenticated", got)
	}
	if _, err := ParseDefaultPolicy("allow-all"); err == nil || !strings.Contains(err.Error(), "all-unauthenticated") {
		t.Errorf("unknown value: err %v, want one listing the valid values", err)
	}
}

func TestAuthenticationKinds(t *testing.T) {
	srv := Meta{"policy.linkerd.io", "server", "web"}
	authz := func(a Authorization) *Policy {
		a.Meta = Meta{"policy.linkerd.io", "authorizationpolicy", "a"}
		return compile(t, &PortPolicy{Server: srv, Default: Deny, Authorizations: []Authorization{a}})
	}
	nets := func(s ...string) []Network {
		var out []Network
		for _, x := range s {
			cidr, except, _ := strings.Cut(x, " except ")
			var ex []string
			if except != "" {
				ex = strings.Split(except, ",")
			}
			n, err := ParseNetwork(cidr, ex...)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	tests := []struct {
		name   string
		authz  Authorization
		client Client
		want   bool
	}{
		{"meshtls exact match", Authorization{Authn: MeshTLS, Identities: []string{webID}}, Client{Addr: inCluster, Identity: webID}, true},
		{"meshtls exact other", Authorization{Authn: MeshTLS, Identities: []string{webID}}, Client{Addr: inCluster, Identity: apiID}, false},
		{"meshtls exact plaintext", Authorization{Authn: MeshTLS, Identities: []string{webID}}, Client{Addr: inCluster}, false},
		{"meshtls star any identity", Authorization{Authn: MeshTLS, Identities: []string{"*"}}, Client{Addr: outCluster, Identity: evilID}, true},
		{"meshtls star plaintext", Authorization{Authn: MeshTLS, Identities: []string{"*"}}, Client{Addr: inCluster}, false},
		{"meshtls suffix namespace", Authorization{Authn: MeshTLS, Identities: []string{"*.shop.serviceaccount.identity.linkerd.cluster.local"}}, Client{Addr: inCluster, Identity: apiID}, true},
		{"meshtls suffix other namespace", Authorization{Authn: MeshTLS, Identities: []string{"*.shop.serviceaccount.identity.linkerd.cluster.local"}}, Client{Addr: inCluster, Identity: evilID}, false},
		{"meshtls suffix is not the suffix itself", Authorization{Authn: MeshTLS, Identities: []string{"*.linkerd.cluster.local"}}, Client{Addr: inCluster, Identity: "linkerd.cluster.local"}, false},
		{"meshtls several", Authorization{Authn: MeshTLS, Identities: []string{apiID, webID}}, Client{Addr: inCluster, Identity: webID}, true},
		{"network in cidr", Authorization{Networks: nets("198.18.0.0/16"), Authn: Unauthenticated}, Client{Addr: inCluster}, true},
		{"network outside", Authorization{Networks: nets("198.18.0.0/16"), Authn: Unauthenticated}, Client{Addr: outCluster}, false},
		{"network except", Authorization{Networks: nets("198.18.0.0/16 except 198.18.3.0/24"), Authn: Unauthenticated}, Client{Addr: inCluster}, false},
		{"network except other", Authorization{Networks: nets("198.18.0.0/16 except 198.18.4.0/24"), Authn: Unauthenticated}, Client{Addr: inCluster}, true},
		{"network v4-mapped client", Authorization{Networks: nets("198.18.0.0/16"), Authn: Unauthenticated}, Client{Addr: netip.MustParseAddr("::ffff:198.18.3.4")}, true},
		{"network single host", Authorization{Networks: nets("198.18.3.4"), Authn: Unauthenticated}, Client{Addr: inCluster}, true},
		{"network v6", Authorization{Networks: nets("fd00::/8"), Authn: Unauthenticated}, Client{Addr: netip.MustParseAddr("fd00::5")}, true},
		{"network and meshtls both needed", Authorization{Networks: nets("198.18.0.0/16"), Authn: MeshTLS, Identities: []string{webID}}, Client{Addr: outCluster, Identity: webID}, false},
		{"network and meshtls both met", Authorization{Networks: nets("198.18.0.0/16"), Authn: MeshTLS, Identities: []string{webID}}, Client{Addr: inCluster, Identity: webID}, true},
		{"unauthenticated admits mtls too", Authorization{Authn: Unauthenticated}, Client{Addr: outCluster, Identity: webID}, true},
		{"unauthenticated no address", Authorization{Networks: AllNetworks, Authn: Unauthenticated}, Client{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := authz(tt.authz)
			if got := p.CheckConn(tt.client); got.Allowed != tt.want {
				t.Errorf("CheckConn = %+v, want allowed=%v", got, tt.want)
			}
			if got := p.CheckRequest(tt.client, "GET", "/x", nil); got.Allowed != tt.want {
				t.Errorf("CheckRequest = %+v, want allowed=%v", got, tt.want)
			}
		})
	}
}

func TestCompileRefusesBadInput(t *testing.T) {
	srv := Meta{"policy.linkerd.io", "server", "web"}
	tests := []struct {
		name string
		p    *PortPolicy
	}{
		{"empty identity list", &PortPolicy{Server: srv, Authorizations: []Authorization{{Authn: MeshTLS}}}},
		{"bad identity", &PortPolicy{Server: srv, Authorizations: []Authorization{{Authn: MeshTLS, Identities: []string{"web*.shop"}}}}},
		{"bad route regex", &PortPolicy{Server: srv, Routes: []Route{{Matches: []RouteMatch{{Path: &PathMatch{Kind: PathRegex, Value: "(["}}}}}}},
		{"negative rate", &PortPolicy{Server: srv, RateLimit: &RateLimit{Total: -1}}},
		{"nil", nil},
	}
	for _, tt := range tests {
		if _, err := Compile(tt.p, cluster); err == nil {
			t.Errorf("%s: Compile succeeded", tt.name)
		}
	}
}

func TestRoutes(t *testing.T) {
	srv := Meta{"policy.linkerd.io", "server", "web"}
	public := Meta{"policy.linkerd.io", "httproute", "public"}
	admin := Meta{"policy.linkerd.io", "httproute", "admin"}
	api := Meta{"policy.linkerd.io", "httproute", "api-post"}
	p := compile(t, &PortPolicy{Server: srv, Default: Deny, Routes: []Route{
		{Meta: public, Matches: []RouteMatch{{Path: &PathMatch{Kind: PathPrefix, Value: "/public"}, Method: "GET"}},
			Authorizations: []Authorization{{Meta: Meta{Name: "everyone"}, Authn: Unauthenticated}}},
		{Meta: admin, Matches: []RouteMatch{{Path: &PathMatch{Kind: PathPrefix, Value: "/admin"}}},
			Authorizations: []Authorization{{Meta: Meta{Name: "client-only"}, Authn: MeshTLS, Identities: []string{webID}}}},
		{Meta: api, Matches: []RouteMatch{{Path: &PathMatch{Kind: PathRegex, Value: "/api/v[0-9]+/.*"}, Method: "POST",
			Headers: []HeaderMatch{{Name: "x-tenant", Value: "a|b", Regex: true}}}},
			Authorizations: []Authorization{{Meta: Meta{Name: "tenants"}, Authn: MeshTLS, Identities: []string{"*"}}}},
	}})
	web, plain := Client{Addr: inCluster, Identity: webID}, Client{Addr: inCluster}
	tenant := func(v string) http.Header { return http.Header{"X-Tenant": {v}} }
	tests := []struct {
		name          string
		c             Client
		method, path  string
		h             http.Header
		allowed       bool
		notFound      bool
		route, byName string
	}{
		{"public for everyone", plain, "GET", "/public/index.html", nil, true, false, "public", "everyone"},
		{"public prefix is element-wise", plain, "GET", "/publicity", nil, false, true, "", ""},
		{"public POST matches no route", plain, "POST", "/public", nil, false, true, "", ""},
		{"admin for client", web, "GET", "/admin", nil, true, false, "admin", "client-only"},
		{"admin refused plaintext", plain, "GET", "/admin/users", nil, false, false, "admin", ""},
		{"regex route with header", web, "POST", "/api/v2/orders", tenant("b"), true, false, "api-post", "tenants"},
		{"regex route header mismatch", web, "POST", "/api/v2/orders", tenant("c"), false, true, "", ""},
		{"regex anchored", web, "POST", "/x/api/v2/orders", tenant("a"), false, true, "", ""},
	}
	for _, tt := range tests {
		d := p.CheckRequest(tt.c, tt.method, tt.path, tt.h)
		if d.Allowed != tt.allowed || d.NotFound != tt.notFound || d.Route.Name != tt.route || d.Authz.Name != tt.byName {
			t.Errorf("%s: %+v; want allowed=%v notFound=%v route=%q authz=%q", tt.name, d, tt.allowed, tt.notFound, tt.route, tt.byName)
		}
	}
	// TCP on a Server with routes: only Server-wide authorizations count.
	if d := p.CheckConn(web); d.Allowed {
		t.Errorf("opaque connection allowed by a route's authorization: %+v", d)
	}
}

func TestRoutePrecedence(t *testing.T) {
	r := func(name string, m RouteMatch) Route {
		return Route{Meta: Meta{Name: name}, Matches: []RouteMatch{m}, Authorizations: []Authorization{{Meta: Meta{Name: name}, Authn: Unauthenticated}}}
	}
	p := compile(t, &PortPolicy{Routes: []Route{
		r("prefix-short", RouteMatch{Path: &PathMatch{Kind: PathPrefix, Value: "/"}}),
		r("prefix-long", RouteMatch{Path: &PathMatch{Kind: PathPrefix, Value: "/a/b"}}),
		r("exact", RouteMatch{Path: &PathMatch{Kind: PathExact, Value: "/a/b"}}),
		r("prefix-method", RouteMatch{Path: &PathMatch{Kind: PathPrefix, Value: "/a/b"}, Method: "PUT"}),
	}})
	tests := []struct{ method, path, want string }{
		{"GET", "/a/b", "exact"}, {"GET", "/a/b/c", "prefix-long"}, {"PUT", "/a/b/c", "prefix-method"}, {"GET", "/z", "prefix-short"},
	}
	for _, tt := range tests {
		if got := p.CheckRequest(Client{Addr: inCluster}, tt.method, tt.path, nil).Route.Name; got != tt.want {
			t.Errorf("%s %s: route %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestProbesAdmitted(t *testing.T) {
	p := compile(t, ForDefault(Deny, []string{"/healthz", "/ready"}))
	c := Client{Addr: netip.MustParseAddr("203.0.113.1")} // kubelet: plaintext, node address
	if d := p.CheckRequest(c, "GET", "/ready", nil); !d.Allowed || d.Route != ProbeRoute || d.Authz != ProbeAuthz {
		t.Errorf("probe: %+v, want allowed by the probe authorization", d)
	}
	for _, req := range [][2]string{{"POST", "/ready"}, {"GET", "/ready/x"}, {"GET", "/admin"}} {
		if d := p.CheckRequest(c, req[0], req[1], nil); d.Allowed {
			t.Errorf("%s %s allowed under deny: %+v", req[0], req[1], d)
		}
	}
	if d := p.CheckConn(c); d.Allowed {
		t.Errorf("opaque connection allowed by probe paths")
	}
	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	if d := p.CheckRequest(c, "GET", "/ready", upgrade); d.Allowed {
		t.Errorf("an Upgrade on a probe path allowed under deny: %+v", d)
	}
}

func TestValidIdentity(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"*", true}, {webID, true}, {"*.shop.serviceaccount.identity.linkerd.cluster.local", true},
		{"", false}, {"*.", false}, {"a.*.b", false}, {"Web.shop", false}, {"web..shop", false}, {"-web.shop", false},
		{"spiffe://cluster.local/ns/x", false}, {"*.*.shop", false},
	}
	for _, tt := range tests {
		if err := ValidIdentity(tt.id); (err == nil) != tt.ok {
			t.Errorf("ValidIdentity(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestParseHelpers(t *testing.T) {
	ports, err := ParsePorts("8080, 9000-9002")
	if err != nil || len(ports) != 4 || !ports[8080] || !ports[9001] {
		t.Errorf("ParsePorts = %v, %v", ports, err)
	}
	if _, err := ParsePorts("70000"); err == nil {
		t.Error("ParsePorts accepted 70000")
	}
	probes, err := ParseProbes("8080/healthz,8080/ready,9090/")
	if err != nil || len(probes[8080]) != 2 || probes[8080][1] != "/ready" || probes[9090][0] != "/" {
		t.Errorf("ParseProbes = %v, %v", probes, err)
	}
	if _, err := ParseProbes("healthz"); err == nil {
		t.Error("ParseProbes accepted a probe without a port")
	}
	if _, err := ParseNetworks("198.18.0.0/16,300.1.1.1/8"); err == nil {
		t.Error("ParseNetworks accepted 300.1.1.1/8")
	}
}

func TestProbesWithRoutes(t *testing.T) {
	p := compile(t, &PortPolicy{Default: Deny, ProbePaths: []string{"/ready"}, Routes: []Route{{Meta: Meta{Name: "r"},
		Matches: []RouteMatch{{Path: &PathMatch{Kind: PathPrefix, Value: "/api"}}}}}})
	if d := p.CheckRequest(Client{Addr: inCluster}, "GET", "/ready", nil); d.Allowed {
		t.Errorf("a Server with routes admits probe paths by itself: %+v", d)
	}
	if !p.IsProbe("GET", "/ready") || p.IsProbe("POST", "/ready") || p.IsProbe("GET", "/api") {
		t.Error("IsProbe")
	}
}
