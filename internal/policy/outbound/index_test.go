package outbound_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/policy/outbound"
)

func signalled(ch <-chan struct{}, within time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(within):
		return false
	}
}

// TestWatchersHearOnlyTheirChanges: a route change wakes the watchers of
// its parent only; a status-only update (same generation) wakes nobody; a
// Service change that makes a ClusterIP target resolve wakes its watcher.
func TestWatchersHearOnlyTheirChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ix := vastaya()
	go ix.Run(ctx)
	stableCh, stop1 := ix.Watch(outbound.WatchKey{Target: stable})
	defer stop1()
	canaryCh, stop2 := ix.Watch(outbound.WatchKey{Target: canary})
	defer stop2()
	laterIP := outbound.WatchKey{Target: "198.19.0.99:80"}
	laterCh, stop3 := ix.Watch(laterIP)
	defer stop3()
	if ix.Watchers() != 3 {
		t.Fatalf("watchers = %d, want 3", ix.Watchers())
	}

	r := parse(t, good, "")
	r.Generation = 1
	ix.SetRoute(r)
	if !signalled(stableCh, 2*time.Second) {
		t.Fatal("the parent's watcher was not told of its new route")
	}
	if signalled(canaryCh, 200*time.Millisecond) || signalled(laterCh, 0) {
		t.Error("watchers of other targets were told")
	}
	if got := ix.Current(outbound.WatchKey{Target: stable}); len(got.HTTP) != 1 {
		t.Errorf("current table has %d routes, want 1", len(got.HTTP))
	}

	// The status writer's own update: same generation, new status.
	again := parse(t, good, "")
	again.Generation = 1
	again.Status = []outbound.RouteParentStatus{{ControllerName: "linkerd.io/policy-controller"}}
	ix.SetRoute(again)
	if signalled(stableCh, 200*time.Millisecond) {
		t.Error("a status-only update woke the watcher")
	}
	if obj, _, _ := ix.Status(again.Key(), created); obj == nil || len(obj.Status) != 1 {
		t.Error("the status-only update was not recorded")
	}

	// A Service appears with the watched ClusterIP.
	ix.SetService(outbound.Service{Namespace: "vastaya", Name: "late", ClusterIPs: []string{"198.19.0.99"}, Ports: []uint16{80}})
	if !signalled(laterCh, 2*time.Second) {
		t.Fatal("the ClusterIP watcher was not told its target became a Service")
	}
	if got := ix.Current(laterIP); got == nil || !strings.HasPrefix(got.Parent.Authority, "late.vastaya.svc") {
		t.Errorf("table of the ClusterIP = %+v", got)
	}
	stop3()
	if ix.Watchers() != 2 {
		t.Errorf("watchers after a cancel = %d, want 2", ix.Watchers())
	}
}
