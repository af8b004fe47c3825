package demo

import (
	"maps"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/destination"
)

// TestRegistry: in explicit mode the registry lists each service's
// endpoints as its replicas' proxies report them; before that the services
// are there with no endpoints, and the file is valid either way.
func TestRegistry(t *testing.T) {
	svcs := services(40*time.Millisecond, 0.1)
	reps, err := plan(svcs, false)
	if err != nil {
		t.Fatal(err)
	}
	count := func() map[string]int {
		t.Helper()
		parsed, err := destination.ParseRegistry([]byte(registry(svcs, reps, false)))
		if err != nil {
			t.Fatalf("registry does not parse: %v\n%s", err, registry(svcs, reps, false))
		}
		got := map[string]int{}
		for name, s := range parsed {
			got[name] = len(s.Endpoints)
		}
		return got
	}
	want := map[string]int{"web.emojivoto.svc.cluster.local:80": 0, "emoji.emojivoto.svc.cluster.local:8080": 0,
		"voting.emojivoto.svc.cluster.local:8080": 0}
	if got := count(); !maps.Equal(got, want) {
		t.Errorf("before any proxy started: endpoints per service %v, want %v", got, want)
	}
	for _, r := range reps {
		switch r.name {
		case "emoji-0":
			r.endpoint = "127.0.0.1:14143"
		case "emoji-1":
			r.endpoint = "127.0.0.1:24143"
		}
	}
	want["emoji.emojivoto.svc.cluster.local:8080"] = 2
	if got := count(); !maps.Equal(got, want) {
		t.Errorf("after two emoji proxies: endpoints per service %v, want %v", got, want)
	}
}
