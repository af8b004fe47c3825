package balance

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manual clock shared by a pool and its endpoints.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestPool(sel Selector, clock *fakeClock, addrs ...string) *Pool {
	p := NewPool(sel)
	p.now = clock.Now
	var eps []*Endpoint
	for _, a := range addrs {
		eps = append(eps, NewEndpoint(a, 1, Peer{}))
	}
	p.Update(eps)
	return p
}

func TestP2CAvoidsSlowEndpoint(t *testing.T) {
	pool := NewPool(NewP2CPeakEWMA())
	var eps []*Endpoint
	for _, a := range []string{"slow", "fast1", "fast2", "fast3"} {
		eps = append(eps, NewEndpoint(a, 1, Peer{}))
	}
	pool.Update(eps)
	var counts sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 150 {
				e, err := pool.Pick()
				if err != nil {
					t.Error(err)
					return
				}
				done := e.Begin()
				if e.Addr == "slow" {
					time.Sleep(20 * time.Millisecond)
				} else {
					time.Sleep(time.Millisecond)
				}
				done(true)
				n, _ := counts.LoadOrStore(e.Addr, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	wg.Wait()
	slow := int64(0)
	if n, ok := counts.Load("slow"); ok {
		slow = n.(*atomic.Int64).Load()
	}
	fastShare := 1 - float64(slow)/1200
	t.Logf("slow endpoint got %d of 1200 requests; fast share %.1f%%", slow, 100*fastShare)
	if fastShare <= 0.90 {
		t.Errorf("fast endpoints got %.1f%% of requests, want > 90%%", 100*fastShare)
	}
}

func TestFastFailuresMakeAnEndpointCostly(t *testing.T) {
	pool := NewPool(NewP2CPeakEWMA())
	dead, live := NewEndpoint("dead", 1, Peer{}), NewEndpoint("live", 1, Peer{})
	pool.Update([]*Endpoint{dead, live})
	dead.Begin()(false) // a refused connection: fails in microseconds
	for range 100 {
		if e, _ := pool.Pick(); e != live {
			t.Fatal("picked the endpoint that just failed over a healthy one")
		}
	}
}

func TestEjectionAndBackoff(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(NewP2CPeakEWMA(), clock, "bad", "good")
	bad := pool.Endpoints()[0]
	fail := func(n int) {
		for range n {
			bad.Begin()(false)
		}
	}
	fail(4)
	if bad.Ejected(clock.Now()) {
		t.Fatal("ejected after 4 failures, want 5")
	}
	fail(1)
	if !bad.Ejected(clock.Now()) {
		t.Fatal("not ejected after 5 consecutive failures")
	}
	for range 50 {
		if e, _ := pool.Pick(); e == bad {
			t.Fatal("picked an ejected endpoint while another is available")
		}
	}
	clock.Advance(1300 * time.Millisecond) // first backoff: 1s ±20%
	if bad.Ejected(clock.Now()) {
		t.Fatal("still ejected after the first backoff")
	}
	fail(5)
	clock.Advance(1300 * time.Millisecond)
	if !bad.Ejected(clock.Now()) {
		t.Fatal("second ejection did not double the backoff")
	}
	clock.Advance(1200 * time.Millisecond) // 2.5s after ejection > 2s+20%
	if bad.Ejected(clock.Now()) {
		t.Fatal("still ejected after the doubled backoff")
	}
	bad.Begin()(true) // success resets failures and backoff
	fail(5)
	clock.Advance(1300 * time.Millisecond)
	if bad.Ejected(clock.Now()) {
		t.Error("backoff not reset by a success")
	}
}

func TestBackoffCappedAtMax(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(Random{}, clock, "bad")
	bad := pool.Endpoints()[0]
	for range 20 {
		for range 5 {
			bad.Begin()(false)
		}
		clock.Advance(73 * time.Second)
	}
	for range 5 {
		bad.Begin()(false)
	}
	clock.Advance(72 * time.Second) // 60s + 20%
	if bad.Ejected(clock.Now()) {
		t.Error("backoff exceeded the 60s cap")
	}
}

func TestPickFailsOpenAndEmpty(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(&RoundRobin{}, clock, "a", "b")
	for _, e := range pool.Endpoints() {
		for range 5 {
			e.Begin()(false)
		}
	}
	if e, err := pool.Pick(); err != nil || e == nil {
		t.Errorf("all ejected: Pick = %v, %v; want fail-open", e, err)
	}
	if _, err := NewPool(Random{}).Pick(); !errors.Is(err, ErrNoEndpoints) {
		t.Errorf("empty pool: err = %v, want ErrNoEndpoints", err)
	}
}

func TestUpdateKeepsStatsOfRetainedEndpoints(t *testing.T) {
	pool := NewPool(NewP2CPeakEWMA())
	a := NewEndpoint("a:1", 1, Peer{})
	pool.Update([]*Endpoint{a, NewEndpoint("b:1", 1, Peer{})})
	done := a.Begin()
	pool.Update([]*Endpoint{NewEndpoint("a:1", 1, Peer{}), NewEndpoint("c:1", 1, Peer{})})
	got := map[string]*Endpoint{}
	for _, e := range pool.Endpoints() {
		got[e.Addr] = e
	}
	if got["a:1"] != a || a.InFlight() != 1 {
		t.Error("retained endpoint lost its statistics")
	}
	if _, ok := got["b:1"]; ok || got["c:1"] == nil || len(got) != 2 {
		t.Errorf("endpoints after update = %v, want a and c", got)
	}
	done(true)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 500 {
				if i == 0 && j%50 == 0 {
					pool.Update([]*Endpoint{NewEndpoint("a:1", 1, Peer{}), NewEndpoint("d:1", 1, Peer{})})
					continue
				}
				if e, err := pool.Pick(); err == nil {
					e.Begin()(true)
				}
			}
		}()
	}
	wg.Wait()
}

func TestLoadWeightAndInflight(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name     string
		weight   float64
		inflight int
		want     float64 // in units of the default RTT
	}{
		{"idle weight 1", 1, 0, 1},
		{"two in flight", 1, 2, 3},
		{"weight 3", 3, 2, 1},
	}
	for _, tt := range tests {
		e := NewEndpoint("x", tt.weight, Peer{})
		for range tt.inflight {
			e.Begin()
		}
		got := e.Load(now) / float64(defaultRTT)
		if got < tt.want-0.001 || got > tt.want+0.001 {
			t.Errorf("%s: Load = %.3f RTT, want %.3f", tt.name, got, tt.want)
		}
	}
}

func TestRoundRobinAndRandom(t *testing.T) {
	pool := []*Endpoint{NewEndpoint("a", 1, Peer{}), NewEndpoint("b", 1, Peer{}), NewEndpoint("c", 1, Peer{})}
	rr := &RoundRobin{}
	for i := range 9 {
		if got := rr.Select(pool); got != pool[i%3] {
			t.Fatalf("round robin pick %d = %s, want %s", i, got.Addr, pool[i%3].Addr)
		}
	}
	seen := map[string]bool{}
	for range 300 {
		seen[Random{}.Select(pool).Addr] = true
	}
	if len(seen) != 3 {
		t.Errorf("random covered %v, want all three", seen)
	}
}

func BenchmarkP2CPick(b *testing.B) {
	pool := NewPool(NewP2CPeakEWMA())
	var eps []*Endpoint
	for i := range 16 {
		eps = append(eps, NewEndpoint(string(rune('a'+i)), 1, Peer{}))
	}
	pool.Update(eps)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e, _ := pool.Pick()
			e.Begin()(true)
		}
	})
}

// steady sends n requests one at a time at 20/s (simulated), each taking
// 1 ms, and counts the picks.
func steady(t *testing.T, pool *Pool, clock *fakeClock, n int, picks map[string]int) {
	t.Helper()
	for range n {
		e, err := pool.Pick()
		if err != nil {
			t.Fatal(err)
		}
		done := e.Begin()
		clock.Advance(time.Millisecond)
		done(true)
		clock.Advance(49 * time.Millisecond)
		picks[e.Addr]++
	}
}

// TestEveryEndpointServesUnderSequentialLoad: one request at a time to
// equally fast endpoints; none is starved.
func TestEveryEndpointServesUnderSequentialLoad(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(NewP2CPeakEWMA(), clock, "a", "b", "c")
	picks := map[string]int{}
	steady(t, pool, clock, 1200, picks)
	for _, a := range []string{"a", "b", "c"} {
		if picks[a] < 120 {
			t.Errorf("endpoint %s served %d of 1200 (%v), want at least 10%%", a, picks[a], picks)
		}
	}
}

// TestNewEndpointJoinsAtPeersCost: an endpoint added to a pool whose
// endpoints are measured starts at their average cost, so it gets traffic
// at once instead of waiting for the default guess to decay.
func TestNewEndpointJoinsAtPeersCost(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(NewP2CPeakEWMA(), clock, "a", "b")
	steady(t, pool, clock, 600, map[string]int{})
	eps := append(pool.Endpoints()[:2:2], NewEndpoint("c", 1, Peer{}))
	pool.Update(eps)
	picks := map[string]int{}
	steady(t, pool, clock, 100, picks) // 5 simulated seconds
	if picks["c"] < 10 {
		t.Errorf("the new endpoint served %d of the next 100 (%v), want at least 10%%", picks["c"], picks)
	}
}
