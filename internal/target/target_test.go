package target

import (
	"regexp"
	"testing"

	"github.com/weftmesh/weft/internal/balance"
)

func TestRoute(t *testing.T) {
	p := &Profile{Routes: []Route{
		{Name: "get-vote", Method: "GET", Path: regexp.MustCompile(`^(?:/vote/\d+)$`)},
		{Name: "any-post", Method: "POST"},
	}}
	for _, tc := range []struct {
		method, path, want string
	}{
		{"GET", "/vote/12", "get-vote"},
		{"GET", "/vote/x", ""},
		{"POST", "/anything", "any-post"},
		{"PUT", "/vote/12", ""},
	} {
		got, ok := p.Route(tc.method, tc.path)
		if got.Name != tc.want || ok != (tc.want != "") {
			t.Errorf("Route(%s %s) = %q, %v; want %q", tc.method, tc.path, got.Name, ok, tc.want)
		}
	}
	var none *Profile
	if _, ok := none.Route("GET", "/"); ok {
		t.Error("a nil profile matched a route")
	}
}

func TestFailed(t *testing.T) {
	def := Route{}
	if !def.Failed(503) || def.Failed(404) {
		t.Error("default classification: want 5xx failed only")
	}
	custom := Route{Failure: func(s int) bool { return s == 404 }}
	if !custom.Failed(404) || custom.Failed(500) {
		t.Error("custom classification not used")
	}
}

func TestOpaque(t *testing.T) {
	pool := balance.NewPool(balance.NewP2CPeakEWMA())
	pool.Update([]*balance.Endpoint{balance.NewEndpoint("198.18.0.1:5432", 1, balance.Peer{})})
	for _, tc := range []struct {
		name string
		d    Destination
		want bool
	}{
		{"nothing known", Destination{Pool: pool}, false},
		{"profile", Destination{Pool: pool, Profile: &Profile{Opaque: true}}, true},
		{"no pool", Destination{}, false},
	} {
		if got := tc.d.Opaque(); got != tc.want {
			t.Errorf("%s: Opaque() = %v, want %v", tc.name, got, tc.want)
		}
	}
	hinted := balance.NewPool(balance.NewP2CPeakEWMA())
	hinted.Update([]*balance.Endpoint{balance.NewEndpoint("198.18.0.1:5432", 1, balance.Peer{Opaque: true})})
	if !(Destination{Pool: hinted}).Opaque() {
		t.Error("an endpoint hinted opaque did not make the destination opaque")
	}
}
