package authz

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func limiter(t *testing.T, rl RateLimit) (*Limiter, *fakeClock) {
	t.Helper()
	l, err := NewLimiter(rl)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Unix(1000, 0)}
	l.now = clk.now
	if l.total != nil {
		l.total = newBucket(rl.Total, clk.t)
	}
	return l, clk
}

// drive sends rps requests per second for 2 s of warm-up (which drains
// the buckets' bursts) then secs seconds from each id, evenly spaced, and
// counts the admitted ones after the warm-up, by identity and by scope of
// refusal.
func drive(l *Limiter, clk *fakeClock, rps, secs int, ids ...string) (ok map[string]int, refused map[string]int) {
	ok, refused = map[string]int{}, map[string]int{}
	step := time.Second / time.Duration(rps)
	for range 2 * rps {
		clk.t = clk.t.Add(step)
		for _, id := range ids {
			l.Allow(id)
		}
	}
	for i := 0; i < rps*secs; i++ {
		clk.t = clk.t.Add(step)
		for _, id := range ids {
			if good, scope := l.Allow(id); good {
				ok[id]++
			} else {
				refused[scope]++
			}
		}
	}
	return ok, refused
}

func TestTotalLimit(t *testing.T) {
	l, clk := limiter(t, RateLimit{Total: 20})
	ok, refused := drive(l, clk, 50, 10, webID)
	if got := float64(ok[webID]) / 10; got < 19.5 || got > 20.5 {
		t.Errorf("admitted %.1f rps of 50 under total 20", got)
	}
	if refused[ScopeTotal] != 500-ok[webID] {
		t.Errorf("refused %v", refused)
	}
}

func TestIdentityLimitAndOverride(t *testing.T) {
	l, clk := limiter(t, RateLimit{Identity: 10, Overrides: []RateOverride{{Clients: []string{webID}, RequestsPerSecond: 30}}})
	ok, refused := drive(l, clk, 50, 10, webID, apiID, "")
	tests := []struct {
		id   string
		want float64
	}{{webID, 30}, {apiID, 10}, {"", 10}}
	for _, tt := range tests {
		if got := float64(ok[tt.id]) / 10; got < tt.want*0.95 || got > tt.want*1.05 {
			t.Errorf("%q admitted %.1f rps, want %.0f", tt.id, got, tt.want)
		}
	}
	if refused[ScopeOverride] == 0 || refused[ScopeIdentity] == 0 || refused[ScopeTotal] != 0 {
		t.Errorf("refusals by scope %v", refused)
	}
}

func TestTotalRefusalDoesNotSpendIdentityTokens(t *testing.T) {
	l, clk := limiter(t, RateLimit{Total: 10, Identity: 10})
	// Two clients at 50 rps share 10 rps in total; each is under its own
	// identity limit on what gets through.
	ok, _ := drive(l, clk, 50, 10, webID, apiID)
	if sum := float64(ok[webID]+ok[apiID]) / 10; sum < 9.5 || sum > 10.5 {
		t.Errorf("admitted %.1f rps in total, want 10", sum)
	}
}

func TestIdentityMemoryBounded(t *testing.T) {
	l, clk := limiter(t, RateLimit{Identity: 1})
	l.max = 100
	for i := range 1000 {
		clk.t = clk.t.Add(time.Millisecond)
		l.Allow(fmt.Sprintf("c%d.ns.serviceaccount.identity.linkerd.cluster.local", i))
	}
	if n := l.Tracked(); n > 100 {
		t.Errorf("tracking %d identities, bound is 100", n)
	}
	// The most recent client keeps its bucket (one token spent).
	if b := l.ids[ScopeIdentity+"/c999.ns.serviceaccount.identity.linkerd.cluster.local"]; b == nil || b.tokens >= b.burst {
		t.Error("the last client's bucket was evicted while in use")
	}
}

// TestBurst: an idle client may send one second's worth at once, then the rate.
func TestBurst(t *testing.T) {
	l, clk := limiter(t, RateLimit{Total: 20})
	n := 0
	for range 100 {
		if ok, _ := l.Allow(webID); ok {
			n++
		}
	}
	if n != 20 {
		t.Errorf("burst admitted %d at once, want 20 (one second's worth)", n)
	}
	clk.t = clk.t.Add(500 * time.Millisecond)
	n = 0
	for range 100 {
		if ok, _ := l.Allow(webID); ok {
			n++
		}
	}
	if n != 10 {
		t.Errorf("after 500 ms admitted %d, want 10", n)
	}
}

func TestNoLimit(t *testing.T) {
	l, clk := limiter(t, RateLimit{})
	ok, _ := drive(l, clk, 1000, 1, webID)
	if ok[webID] != 1000 {
		t.Errorf("admitted %d of 1000 with no limits", ok[webID])
	}
}
