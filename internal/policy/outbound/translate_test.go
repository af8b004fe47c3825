package outbound_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/policy/outbound"
	"github.com/weftmesh/weft/internal/policy/outbound/kube"
	"github.com/weftmesh/weft/internal/route"
)

var created = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

// load reads a testdata manifest into a Route (in namespace ns when the
// manifest names none, as `kubectl apply -n ns` would).
func load(t *testing.T, file, ns string) *outbound.Route {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, string(b), ns)
}

func parse(t *testing.T, doc, ns string) *outbound.Route {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	if u.GetNamespace() == "" {
		u.SetNamespace(ns)
	}
	u.SetCreationTimestamp(metav1Time(created))
	group := strings.Split(u.GetAPIVersion(), "/")[0]
	r, err := kube.Decode(group, u.GetKind(), u)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func vastaya() *outbound.Index {
	ix := outbound.NewIndex("cluster.local", slog.New(slog.DiscardHandler))
	ix.SetService(outbound.Service{Namespace: "vastaya", Name: "projects-vastaya-svc", ClusterIPs: []string{"198.19.0.10"}, Ports: []uint16{80}})
	ix.SetService(outbound.Service{Namespace: "vastaya", Name: "projects-canary-vastaya-svc", ClusterIPs: []string{"198.19.0.11"}, Ports: []uint16{80}})
	return ix
}

const (
	stable = "projects-vastaya-svc.vastaya.svc.cluster.local:80"
	canary = "projects-canary-vastaya-svc.vastaya.svc.cluster.local:80"
)

func parent() route.Parent {
	return route.Parent{Namespace: "vastaya", Name: "projects-vastaya-svc", Port: 80, Authority: stable}
}

func be(name, authority string, w uint32) route.Backend {
	return route.Backend{Namespace: "vastaya", Name: name, Port: 80, Authority: authority, Weight: w}
}

func meta(group, name string) route.Meta {
	return route.Meta{Group: group, Kind: "HTTPRoute", Namespace: "vastaya", Name: name, Created: created}
}

var slash = &route.PathMatch{Kind: route.PathPrefix, Value: "/"}

func TestSeed003Tables(t *testing.T) {
	tests := []struct {
		file string
		want *route.Table
	}{
		{"seed003-canary.yaml", &route.Table{Parent: parent(), HTTP: []route.HTTPRoute{{
			Meta: meta("gateway.networking.k8s.io", "project-vastaya-split"),
			Rules: []route.HTTPRule{{Backends: []route.Backend{
				be("projects-vastaya-svc", stable, 10), be("projects-canary-vastaya-svc", canary, 90)}}}}}}},
		{"seed003-bluegreen.yaml", &route.Table{Parent: parent(), HTTP: []route.HTTPRoute{{
			Meta: meta("gateway.networking.k8s.io", "project-vastaya-split"),
			Rules: []route.HTTPRule{{Backends: []route.Backend{
				be("projects-vastaya-svc", stable, 0), be("projects-canary-vastaya-svc", canary, 1)}}}}}}},
		{"seed003-ab.yaml", &route.Table{Parent: parent(), HTTP: []route.HTTPRoute{{
			Meta: meta("gateway.networking.k8s.io", "project-vastaya-traffic-split"),
			Rules: []route.HTTPRule{
				{Matches: []route.HTTPMatch{{Path: slash, Headers: []route.ValueMatch{
					{Name: "User-Agent", Value: ".*Firefox.*", Regex: true}, {Name: "Accept-Language", Value: "en-US.*", Regex: true}}}},
					Backends: []route.Backend{be("projects-vastaya-svc", stable, 10), be("projects-canary-vastaya-svc", canary, 90)}},
				{Backends: []route.Backend{be("projects-vastaya-svc", stable, 1)}},
			}}}}},
		// The only backend weighs 0 beside a mirror: it serves (docs/traffic.md).
		{"seed003-mirror.yaml", &route.Table{Parent: parent(), HTTP: []route.HTTPRoute{{
			Meta: meta("gateway.networking.k8s.io", "project-vastaya-traffic-split"),
			Rules: []route.HTTPRule{{
				Filters: []route.Filter{{Kind: route.RequestMirror, Mirror: &route.Mirror{
					Backend: be("projects-canary-vastaya-svc", canary, 1), Percent: 100}}},
				Backends: []route.Backend{be("projects-vastaya-svc", stable, 1)}}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ix := vastaya()
			r := load(t, tt.file, "vastaya")
			ix.SetRoute(r)
			for _, target := range []string{stable, "198.19.0.10:80"} {
				got := ix.Table(outbound.WatchKey{Target: target})
				if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("%s: table differs (-want +got):\n%s", target, diff)
				}
			}
			// The canary Service has no route of its own.
			if got := ix.Table(outbound.WatchKey{Target: canary}); got == nil || len(got.HTTP) != 0 {
				t.Errorf("canary's table = %+v, want one with no routes", got)
			}
			_, st, ok := ix.Status(r.Key(), created)
			if !ok || len(st) != 1 {
				t.Fatalf("status = %+v, want one parent", st)
			}
			for _, c := range st[0].Conditions {
				want := "True"
				if c.Type == outbound.CondConflicted {
					want = "False"
				}
				if c.Status != want {
					t.Errorf("condition %s = %s (%s: %s), want %s", c.Type, c.Status, c.Reason, c.Message, want)
				}
			}
		})
	}
}

func metav1Time(t time.Time) metav1.Time { return metav1.NewTime(t) }
