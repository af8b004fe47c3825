package inboundpolicy

import (
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
)

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	if u.GetNamespace() == "" {
		u.SetNamespace("shop")
	}
	return u
}

func newTestIndex(t *testing.T, nsAnn, podAnn map[string]string) *Index {
	t.Helper()
	x := NewIndex(Options{ControllerNamespace: "linkerd", TrustDomain: "cluster.local", Default: authz.ClusterUnauthenticated})
	x.SetNamespace("shop", nsAnn)
	x.SetPod(&Pod{Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web"}, Annotations: podAnn,
		Ports: map[string]int32{"http": 8080, "admin": 9090}, Probes: map[uint16][]string{8080: {"/ready"}}})
	return x
}

func TestDefaultPrecedence(t *testing.T) {
	tests := []struct {
		name       string
		ns, pod    map[string]string
		port       uint16
		want       authz.DefaultPolicy
		wantProbes int
	}{
		{"cluster default", nil, nil, 8080, authz.ClusterUnauthenticated, 1},
		{"namespace", map[string]string{compat.AnnotationDefaultInboundPolicy: "deny"}, nil, 8080, authz.Deny, 1},
		{"pod over namespace", map[string]string{compat.AnnotationDefaultInboundPolicy: "deny"}, map[string]string{compat.AnnotationDefaultInboundPolicy: "audit"}, 8080, authz.Audit, 1},
		{"invalid pod annotation fails closed", map[string]string{compat.AnnotationDefaultInboundPolicy: "audit"}, map[string]string{compat.AnnotationDefaultInboundPolicy: "open"}, 8080, authz.Deny, 1},
		{"invalid namespace annotation fails closed", map[string]string{compat.AnnotationDefaultInboundPolicy: "Deny"}, nil, 8080, authz.Deny, 1},
		{"invalid require-identity ports: every port", nil, map[string]string{compat.AnnotationRequireIdentityPorts: "http"}, 8080, authz.ClusterAuthenticated, 1},
		{"require identity", nil, map[string]string{compat.AnnotationRequireIdentityPorts: "9000-9100"}, 9090, authz.ClusterAuthenticated, 0},
		{"require identity other port", nil, map[string]string{compat.AnnotationRequireIdentityPorts: "9000-9100"}, 8080, authz.ClusterUnauthenticated, 1},
	}
	for _, tt := range tests {
		x := newTestIndex(t, tt.ns, tt.pod)
		p, err := x.Policy("shop", "web-0", tt.port)
		if err != nil {
			t.Fatal(err)
		}
		if p.Default != tt.want || p.Server != authz.DefaultMeta(string(tt.want)) || len(p.ProbePaths) != tt.wantProbes {
			t.Errorf("%s: default %s server %+v probes %v; want %s", tt.name, p.Default, p.Server, p.ProbePaths, tt.want)
		}
	}
	if _, err := newTestIndex(t, nil, nil).Policy("shop", "nobody", 80); err == nil {
		t.Error("unknown pod: no error")
	}
}

func TestServersAndAuthorizations(t *testing.T) {
	x := newTestIndex(t, map[string]string{compat.AnnotationDefaultInboundPolicy: "all-unauthenticated"}, nil)
	for _, s := range []struct{ kind, y string }{
		{KindServer, `metadata: {name: web-http, labels: {tier: front}, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {podSelector: {matchLabels: {app: web}}, port: http}`},
		{KindServer, `metadata: {name: web-http-late, creationTimestamp: "2026-02-01T00:00:00Z"}
spec: {podSelector: {matchLabels: {app: web}}, port: 8080, accessPolicy: all-unauthenticated}`},
		{KindServer, `metadata: {name: admin}
spec: {podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}, port: 9090, accessPolicy: audit}`},
		{KindServerAuthorization, `metadata: {name: by-selector}
spec: {server: {selector: {matchLabels: {tier: front}}}, client: {meshTLS: {serviceAccounts: [{name: client}]}}}`},
		{KindServerAuthorization, `metadata: {name: by-name-nets}
spec: {server: {name: web-http}, client: {unauthenticated: true, networks: [{cidr: 198.18.0.0/16, except: [198.18.9.0/24]}]}}`},
		{KindAuthorizationPolicy, `metadata: {name: whole-ns}
spec: {targetRef: {kind: Namespace, name: shop}, requiredAuthenticationRefs: [{kind: ServiceAccount, name: ops}]}`},
	} {
		x.Upsert(s.kind, obj(t, s.y))
	}
	p, err := x.Policy("shop", "web-0", 8080)
	if err != nil {
		t.Fatal(err)
	}
	if p.Server.Name != "web-http" || p.Default != authz.Deny {
		t.Fatalf("server %+v default %s; want the oldest Server, web-http, with accessPolicy deny", p.Server, p.Default)
	}
	c, err := authz.Compile(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := func(sa string) string { return sa + ".shop.serviceaccount.identity.linkerd.cluster.local" }
	tests := []struct {
		addr, id string
		want     string
	}{
		{"203.0.113.1", id("client"), "by-selector"},
		{"203.0.113.1", id("ops"), "whole-ns"},
		{"198.18.3.3", "", "by-name-nets"},
		{"198.18.9.3", "", ""},
		{"203.0.113.1", id("other"), ""},
	}
	for _, tt := range tests {
		d := c.CheckConn(authz.Client{Addr: netip.MustParseAddr(tt.addr), Identity: tt.id})
		if got := d.Authz.Name; d.Allowed != (tt.want != "") || got != tt.want {
			t.Errorf("%s %q: %+v, want authz %q", tt.addr, tt.id, d, tt.want)
		}
	}
	a, err := x.Policy("shop", "web-0", 9090)
	if err != nil || a.Server.Name != "admin" || a.Default != authz.Audit {
		t.Errorf("port 9090: %+v %v; want Server admin with audit", a, err)
	}
	if got := x.UnusedServers(); len(got) != 0 {
		t.Errorf("unused servers %v", got)
	}
}

func TestInvalidRouteFailsClosed(t *testing.T) {
	x := newTestIndex(t, nil, nil)
	x.Upsert(KindServer, obj(t, `metadata: {name: web-http}
spec: {podSelector: {matchLabels: {app: web}}, port: 8080, accessPolicy: deny}`))
	x.Upsert(KindNetworkAuthn, obj(t, `metadata: {name: everyone}
spec: {networks: [{cidr: 0.0.0.0/0}]}`))
	x.Upsert(KindHTTPRoute, obj(t, `metadata: {name: all}
spec: {parentRefs: [{kind: Server, name: web-http}], rules: [{matches: [{path: {value: /}}]}]}`))
	x.Upsert(KindAuthorizationPolicy, obj(t, `metadata: {name: all-open}
spec: {targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: all}, requiredAuthenticationRefs: [{kind: NetworkAuthentication, name: everyone}]}`))
	allowed := func() bool {
		p, err := x.Policy("shop", "web-0", 8080)
		if err != nil {
			t.Fatal(err)
		}
		c, err := authz.Compile(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.CheckRequest(authz.Client{Addr: netip.MustParseAddr("198.18.0.1")}, "GET", "/admin", nil).Allowed
	}
	if !allowed() {
		t.Fatal("the open route does not admit")
	}
	// A second, restrictive but invalid route: the Server fails closed.
	x.Upsert(KindHTTPRoute, obj(t, `metadata: {name: admin}
spec: {parentRefs: [{kind: Server, name: web-http}], rules: [{matches: [{path: {type: RegularExpression, value: "/admin(["}}]}]}`))
	if allowed() {
		t.Error("an invalid route left /admin open")
	}
	probs := x.Problems()
	if len(probs) != 1 || probs[0].Name != "admin" {
		t.Errorf("problems %+v, want one on HTTPRoute admin", probs)
	}
}

// TestInvalidServerFailsClosed: a Server the controller cannot use denies
// the ports it may have meant to cover (probes still admitted) instead of
// leaving them to a wider default; ports it clearly does not cover keep
// the default.
func TestInvalidServerFailsClosed(t *testing.T) {
	tests := []struct {
		name, server string
		port         uint16
		wantServer   string // "" : the default policy
	}{
		{"bad access policy, its port", `spec: {podSelector: {matchLabels: {app: web}}, port: 8080, accessPolicy: Open}`, 8080, "broken"},
		{"bad access policy, another port", `spec: {podSelector: {matchLabels: {app: web}}, port: 8080, accessPolicy: Open}`, 9090, ""},
		{"bad selector, its port", `spec: {podSelector: {matchExpressions: [{key: app, operator: Near}]}, port: 8080}`, 8080, "broken"},
		{"no selector", `spec: {port: http}`, 8080, "broken"},
		{"bad port", `spec: {podSelector: {matchLabels: {app: web}}, port: 0}`, 9090, "broken"},
		{"selects other pods", `spec: {podSelector: {matchLabels: {app: db}}, port: 8080, accessPolicy: Open}`, 8080, ""},
		{"a port name the pod lacks", `spec: {podSelector: {}, port: metrics, accessPolicy: Open}`, 8080, ""},
	}
	for _, tt := range tests {
		x := newTestIndex(t, map[string]string{compat.AnnotationDefaultInboundPolicy: "all-unauthenticated"}, nil)
		x.Upsert(KindServer, obj(t, "metadata: {name: broken}\n"+tt.server))
		p, err := x.Policy("shop", "web-0", tt.port)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tt.wantServer == "" && p.Server != authz.DefaultMeta(string(authz.AllUnauthenticated)):
			t.Errorf("%s: server %+v, want the namespace default", tt.name, p.Server)
		case tt.wantServer != "" && (p.Server.Name != tt.wantServer || p.Default != authz.Deny || len(p.Authorizations) != 0):
			t.Errorf("%s: %+v, want Server %s denying everyone", tt.name, p, tt.wantServer)
		}
	}
}

// TestServerProtocol: the destination service's view of a port's
// proxyProtocol is that of the Server the policy controller picks.
func TestServerProtocol(t *testing.T) {
	server := func(name, created, port, proto, sel string) *unstructured.Unstructured {
		u := obj(t, `
metadata: {name: `+name+`, creationTimestamp: "`+created+`"}
spec: {podSelector: `+sel+`, port: `+port+`, proxyProtocol: `+proto+`}`)
		return u
	}
	web := &Pod{Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web"}, Ports: map[string]int32{"smtp": 2525}}
	other := func(u *unstructured.Unstructured) *unstructured.Unstructured { u.SetNamespace("other"); return u }
	tests := []struct {
		name    string
		servers []*unstructured.Unstructured
		port    uint16
		want    authz.Protocol
	}{
		{"none", nil, 2525, authz.ProtocolUnknown},
		{"by port name", []*unstructured.Unstructured{server("a", "2026-01-01T00:00:00Z", "smtp", "opaque", "{matchLabels: {app: web}}")}, 2525, authz.ProtocolOpaque},
		{"by number", []*unstructured.Unstructured{server("a", "2026-01-01T00:00:00Z", "2525", "TLS", "{matchLabels: {app: web}}")}, 2525, authz.ProtocolTLS},
		{"other port", []*unstructured.Unstructured{server("a", "2026-01-01T00:00:00Z", "2525", "opaque", "{matchLabels: {app: web}}")}, 8080, authz.ProtocolUnknown},
		{"other pods", []*unstructured.Unstructured{server("a", "2026-01-01T00:00:00Z", "smtp", "opaque", "{matchLabels: {app: db}}")}, 2525, authz.ProtocolUnknown},
		{"other namespace", []*unstructured.Unstructured{other(server("a", "2026-01-01T00:00:00Z", "smtp", "opaque", "{matchLabels: {app: web}}"))}, 2525, authz.ProtocolUnknown},
		{"oldest wins", []*unstructured.Unstructured{
			server("new", "2026-02-01T00:00:00Z", "smtp", "opaque", "{matchLabels: {app: web}}"),
			server("old", "2026-01-01T00:00:00Z", "smtp", "HTTP/1", "{matchLabels: {app: web}}"),
		}, 2525, authz.ProtocolHTTP1},
		{"unknown value", []*unstructured.Unstructured{server("a", "2026-01-01T00:00:00Z", "smtp", "SMTP", "{matchLabels: {app: web}}")}, 2525, authz.ProtocolUnknown},
		{"invalid Server: not opaque", []*unstructured.Unstructured{server("a", "2026-01-01T00:00:00Z", "smtp", "opaque", "{matchExpressions: [{key: app, operator: Bogus}]}")}, 2525, authz.ProtocolUnknown},
	}
	for _, tt := range tests {
		if got := ServerProtocol(tt.servers, web, tt.port); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestSeveralNetworkAuthentications: an AuthorizationPolicy requiring
// several NetworkAuthentications admits a client in any of their networks
// (with each one's exceptions), and still requires its MeshTLS
// authentication; one invalid or missing NetworkAuthentication makes the
// whole policy unusable (it admits nobody, reported).
func TestSeveralNetworkAuthentications(t *testing.T) {
	setup := func(refs string, extra ...string) *authz.Policy {
		x := newTestIndex(t, nil, nil)
		x.Upsert(KindServer, obj(t, `metadata: {name: web-http}
spec: {podSelector: {matchLabels: {app: web}}, port: 8080}`))
		x.Upsert(KindNetworkAuthn, obj(t, `metadata: {name: pods}
spec: {networks: [{cidr: 198.18.0.0/16, except: [198.18.9.0/24]}]}`))
		x.Upsert(KindNetworkAuthn, obj(t, `metadata: {name: office}
spec: {networks: [{cidr: 203.0.113.0/24}, {cidr: "2001:db8::/32"}]}`))
		x.Upsert(KindMeshTLSAuthn, obj(t, `metadata: {name: client}
spec: {identityRefs: [{kind: ServiceAccount, name: client}]}`))
		for _, y := range extra {
			x.Upsert(KindNetworkAuthn, obj(t, y))
		}
		x.Upsert(KindAuthorizationPolicy, obj(t, `metadata: {name: nets}
spec: {targetRef: {kind: Server, name: web-http}, requiredAuthenticationRefs: `+refs+`}`))
		p, err := x.Policy("shop", "web-0", 8080)
		if err != nil {
			t.Fatal(err)
		}
		c, err := authz.Compile(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const clientID = "client.shop.serviceaccount.identity.linkerd.cluster.local"
	tests := []struct {
		name, refs string
		extra      []string
		addr, id   string
		want       bool
	}{
		{"first network", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}]`, nil, "198.18.3.3", "", true},
		{"second network", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}]`, nil, "203.0.113.7", "", true},
		{"second network, IPv6", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}]`, nil, "2001:db8::1", "", true},
		{"first network's exception", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}]`, nil, "198.18.9.1", "", false},
		{"neither", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}]`, nil, "192.0.2.1", "", false},
		{"networks and identity: both hold", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}, {kind: MeshTLSAuthentication, name: client}]`, nil, "203.0.113.7", clientID, true},
		{"networks and identity: no identity", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}, {kind: MeshTLSAuthentication, name: client}]`, nil, "203.0.113.7", "", false},
		{"networks and identity: outside", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: office}, {kind: MeshTLSAuthentication, name: client}]`, nil, "192.0.2.1", clientID, false},
		{"one missing: nobody", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: gone}]`, nil, "198.18.3.3", "", false},
		{"one invalid: nobody", `[{kind: NetworkAuthentication, name: pods}, {kind: NetworkAuthentication, name: bad}]`,
			[]string{"metadata: {name: bad}\nspec: {networks: [{cidr: 198.18.0.0/33}]}"}, "198.18.3.3", "", false},
	}
	for _, tt := range tests {
		d := setup(tt.refs, tt.extra...).CheckConn(authz.Client{Addr: netip.MustParseAddr(tt.addr), Identity: tt.id})
		if d.Allowed != tt.want || tt.want && d.Authz.Name != "nets" {
			t.Errorf("%s: %s %q: %+v, want allowed %v by nets", tt.name, tt.addr, tt.id, d, tt.want)
		}
	}
}
