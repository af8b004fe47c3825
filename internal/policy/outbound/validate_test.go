package outbound_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/policy/outbound"
)

// good is a valid route beside every bad one: it must stay in the table.
const good = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: good, namespace: vastaya}
spec:
  parentRefs: [{name: projects-vastaya-svc, kind: Service, group: core, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /good}}]
    backendRefs: [{name: projects-canary-vastaya-svc, port: 80}]
`

func badRoute(rule string) string {
	return `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad, namespace: vastaya}
spec:
  parentRefs: [{name: projects-vastaya-svc, kind: Service, group: core, port: 80}]
  rules:
  - ` + strings.ReplaceAll(strings.TrimSpace(rule), "\n", "\n    ")
}

func TestInvalidRoutesAreReportedAndLeftOut(t *testing.T) {
	huge := strings.Repeat("[a-z]{1,90}", 40) // 440 bytes, within the CRD, but over 7,000 instructions
	tests := []struct {
		name     string
		doc      string
		accepted string // Accepted status and reason
		resolved string // ResolvedRefs status and reason
		inTable  bool   // the bad route is in the table
		message  string // part of the message of the failing condition
	}{
		{"unsupported filter", badRoute(`
filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Thing, name: x}}]
backendRefs: [{name: projects-vastaya-svc, port: 80}]`), "False/UnsupportedValue", "True/ResolvedRefs", false, `unsupported filter "ExtensionRef"`},
		{"invalid regex", badRoute(`
matches: [{path: {type: RegularExpression, value: "/(unclosed"}}]`), "False/UnsupportedValue", "True/ResolvedRefs", false, "invalid regular expression"},
		{"huge regex", badRoute(fmt.Sprintf(`
matches: [{headers: [{name: x-user, type: RegularExpression, value: %q}]}]`, huge)), "False/UnsupportedValue", "True/ResolvedRefs", false, "regular expression too large"},
		{"missing backend", badRoute(`
backendRefs: [{name: nowhere, port: 80}]`), "True/Accepted", "False/BackendNotFound", true, "vastaya/nowhere"},
		{"backend of unknown kind", badRoute(`
backendRefs: [{name: web, kind: Deployment, group: apps, port: 80}]`), "True/Accepted", "False/InvalidKind", true, "apps/Deployment"},
		{"bad route annotation", strings.Replace(badRoute(`
backendRefs: [{name: projects-vastaya-svc, port: 80}]`), "name: bad,", "name: bad, annotations: {retry.linkerd.io/limit: lots},", 1),
			"False/UnsupportedValue", "True/ResolvedRefs", false, "retry.linkerd.io/limit"},
		{"backend timeout above request timeout", badRoute(`
timeouts: {request: 1s, backendRequest: 2s}`), "False/UnsupportedValue", "True/ResolvedRefs", false, "exceeds timeouts.request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := vastaya()
			ix.SetRoute(parse(t, good, ""))
			bad := parse(t, tt.doc, "")
			ix.SetRoute(bad)
			tab := ix.Table(outbound.WatchKey{Target: stable})
			names := map[string]bool{}
			for _, r := range tab.HTTP {
				names[r.Meta.Name] = true
			}
			if !names["good"] {
				t.Errorf("the good route left the table: %v", names)
			}
			if names["bad"] != tt.inTable {
				t.Errorf("bad route in table = %v, want %v", names["bad"], tt.inTable)
			}
			// A backend that is no existing Service goes out without an
			// authority: the proxy answers 500 for its share.
			for _, r := range tab.HTTP {
				for _, rule := range r.Rules {
					for _, b := range rule.Backends {
						if (b.Authority == "") != (b.Name == "nowhere" || b.Name == "web") {
							t.Errorf("route %s backend %s: authority %q", r.Meta.Name, b.Name, b.Authority)
						}
					}
				}
			}
			_, st, _ := ix.Status(bad.Key(), created)
			if len(st) != 1 {
				t.Fatalf("status parents = %+v, want 1", st)
			}
			got := map[string]string{}
			msg := ""
			for _, c := range st[0].Conditions {
				got[c.Type] = c.Status + "/" + c.Reason
				if c.Status == "False" && c.Type != outbound.CondConflicted {
					msg += c.Message
				}
			}
			if got[outbound.CondAccepted] != tt.accepted || got[outbound.CondResolvedRefs] != tt.resolved {
				t.Errorf("conditions = %v, want Accepted %s, ResolvedRefs %s", got, tt.accepted, tt.resolved)
			}
			if !strings.Contains(msg, tt.message) {
				t.Errorf("messages %q do not mention %q", msg, tt.message)
			}
		})
	}
}

func TestParentsAndConflicts(t *testing.T) {
	ix := vastaya()
	// Unknown parent kinds (a Gateway) are not ours: no status entry.
	gw := parse(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: vastaya}
spec:
  parentRefs: [{name: my-gateway}]
  rules: [{backendRefs: [{name: projects-vastaya-svc, port: 80}]}]
`, "")
	ix.SetRoute(gw)
	if _, st, ok := ix.Status(gw.Key(), created); ok || len(st) != 0 {
		t.Errorf("a Gateway-only route got status %+v", st)
	}
	// A parent Service that does not exist, and a port it lacks.
	for _, tt := range []struct{ parent, want string }{
		{"{name: ghost, kind: Service}", "parent Service vastaya/ghost not found"},
		{"{name: projects-vastaya-svc, kind: Service, port: 8080}", "has no port 8080"},
	} {
		r := parse(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orphan, namespace: vastaya}
spec:
  parentRefs: [`+tt.parent+`]
`, "")
		ix.SetRoute(r)
		_, st, _ := ix.Status(r.Key(), created)
		if len(st) != 1 || st[0].Conditions[0].Reason != outbound.ReasonNoMatchingParent || !strings.Contains(st[0].Conditions[0].Message, tt.want) {
			t.Errorf("%s: status %+v, want NoMatchingParent %q", tt.parent, st, tt.want)
		}
	}
	// Two routes claiming the same match: the older keeps it, the newer
	// is told.
	older := parse(t, good, "")
	ix.SetRoute(older)
	newer := parse(t, strings.Replace(good, "name: good", "name: newer", 1), "")
	newer.Created = older.Created.Add(1)
	ix.SetRoute(newer)
	cond := func(r *outbound.Route) string {
		_, st, _ := ix.Status(r.Key(), created)
		for _, c := range st[0].Conditions {
			if c.Type == outbound.CondConflicted {
				return c.Status + "/" + c.Reason + ": " + c.Message
			}
		}
		return ""
	}
	if got := cond(newer); !strings.HasPrefix(got, "True/MatchConflict") || !strings.Contains(got, "vastaya/good") {
		t.Errorf("newer route's Conflicted = %q", got)
	}
	if got := cond(older); !strings.HasPrefix(got, "False/") {
		t.Errorf("older route's Conflicted = %q", got)
	}
	tab := ix.Table(outbound.WatchKey{Target: stable})
	if len(tab.HTTP) != 2 || tab.HTTP[0].Meta.Name != "good" || tab.HTTP[1].Meta.Name != "newer" {
		t.Errorf("table routes not oldest first: %+v", tab.HTTP)
	}
}

func TestConsumerRoutes(t *testing.T) {
	ix := vastaya()
	ix.SetRoute(parse(t, good, ""))
	consumer := strings.Replace(strings.Replace(good, "namespace: vastaya}", "namespace: shop}", 1),
		"port: 80}]\n  rules", "port: 80, namespace: vastaya}]\n  rules", 1)
	consumer = strings.Replace(consumer, "name: good", "name: shop-only", 1)
	ix.SetRoute(parse(t, consumer, ""))
	for _, tt := range []struct{ ns, want string }{{"shop", "shop-only"}, {"web", "good"}, {"", "good"}} {
		tab := ix.Table(outbound.WatchKey{Target: stable, ClientNS: tt.ns})
		if len(tab.HTTP) != 1 || tab.HTTP[0].Meta.Name != tt.want {
			t.Errorf("client in %q: routes %+v, want only %s", tt.ns, tab.HTTP, tt.want)
		}
	}
}

// TestStatusClearedWhenTheServiceParentGoes: a route moved from a Service
// to a Gateway keeps other controllers' entries and loses ours.
func TestStatusClearedWhenTheServiceParentGoes(t *testing.T) {
	ix := vastaya()
	r := parse(t, good, "")
	r.Generation = 1
	ix.SetRoute(r)
	_, st, _ := ix.Status(r.Key(), created)
	moved := parse(t, strings.Replace(good, "parentRefs: [{name: projects-vastaya-svc, kind: Service, group: core, port: 80}]",
		"parentRefs: [{name: gw}]", 1), "")
	moved.Generation = 2
	moved.Status = append(st, outbound.RouteParentStatus{ControllerName: "example.com/gateway", ParentRef: outbound.ParentRef{Name: "gw"}})
	ix.SetRoute(moved)
	_, got, ok := ix.Status(moved.Key(), created)
	if !ok || len(got) != 1 || got[0].ControllerName != "example.com/gateway" {
		t.Errorf("status after the move = %+v (known %v), want only the gateway's entry", got, ok)
	}
	if tab := ix.Table(outbound.WatchKey{Target: stable}); len(tab.HTTP) != 0 {
		t.Errorf("the moved route is still in the Service's table")
	}
}
