// Package desttest helps tests of the destination service: it follows a
// Watch stream and folds its incremental updates into the endpoint set they
// describe, as a proxy would.
package desttest

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
)

// Set is the endpoint set a Watch stream describes so far.
type Set struct {
	mu  sync.Mutex
	set map[string]bool
	err error
}

// Watch opens a Watch stream for target with the caller's context token
// and follows it until ctx ends.
func Watch(ctx context.Context, t testing.TB, c destinationv1.DestinationClient, target, token string) *Set {
	t.Helper()
	stream, err := c.Watch(ctx, &destinationv1.WatchRequest{Target: target, ContextToken: token})
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{set: map[string]bool{}}
	go func() {
		for {
			u, err := stream.Recv()
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			if u.GetNoEndpoints() != nil {
				clear(s.set)
			}
			for _, a := range u.GetRemove().GetAddrs() {
				delete(s.set, a)
			}
			for _, e := range u.GetAdd().GetEndpoints() {
				s.set[e.GetAddr()] = true
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// Describe lists the set's addresses, each shortened by short, sorted and
// comma-separated; and the stream's error, if it ended.
func (s *Set) Describe(short func(addr string) string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.set))
	for a := range s.set {
		out = append(out, short(a))
	}
	sort.Strings(out)
	return strings.Join(out, ","), s.err
}

// WaitFor waits (at most 10 s) until Describe(short) is want, failing the
// test, with name, if the stream ends or time runs out first.
func (s *Set) WaitFor(t testing.TB, name, want string, short func(addr string) string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, err := s.Describe(short)
		if got == want {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("%s: endpoints %q, want %q (stream error %v)", name, got, want, err)
		}
	}
}
