package balance

import (
	"errors"
	"testing"
	"time"
)

// TestFailureAccrualProbation: Linkerd's consecutive failure accrual —
// N failures eject; after the penalty one probe request at a time; a
// failed probe re-ejects for twice as long; a successful one restores.
func TestFailureAccrualProbation(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(NewP2CPeakEWMA(), clock, "bad")
	pool.SetEjection(EjectionPolicy{ConsecutiveFailures: 3, MinBackoff: time.Second, MaxBackoff: 4 * time.Second, FailFast: true})
	bad := pool.Endpoints()[0]
	for range 3 {
		e, err := pool.Pick()
		if err != nil {
			t.Fatal(err)
		}
		e.Begin()(false)
	}
	if _, err := pool.Pick(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all ejected: Pick err = %v, want ErrUnavailable", err)
	}
	penalties := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, want := range penalties {
		clock.Advance(want - time.Millisecond)
		if _, err := pool.Pick(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("ejection %d: available %v before its %v penalty ended", i+1, want-time.Millisecond, want)
		}
		clock.Advance(time.Millisecond)
		probe, err := pool.Pick()
		if err != nil || probe != bad || !bad.Probation() {
			t.Fatalf("ejection %d: after the penalty Pick = %v, %v (probation %v), want the endpoint on probation", i+1, probe, err, bad.Probation())
		}
		done := probe.Begin()
		if _, err := pool.Pick(); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("ejection %d: a second request got through while the probe is in flight", i+1)
		}
		done(false) // the probe fails: ejected again at once, for longer
	}
	clock.Advance(4 * time.Second)
	probe, _ := pool.Pick()
	probe.Begin()(true)
	if bad.Probation() || !bad.Available(clock.Now()) {
		t.Fatal("a successful probe did not restore the endpoint")
	}
	for range 2 {
		bad.Begin()(false)
	}
	if !bad.Available(clock.Now()) {
		t.Error("restored endpoint ejected by fewer than 3 failures: counters not reset")
	}
	bad.Begin()(false)
	clock.Advance(time.Second)
	if !bad.Available(clock.Now()) {
		t.Error("after a success the backoff did not restart at the minimum")
	}
}

func TestFailureAccrualJitter(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(Random{}, clock, "a")
	pool.SetEjection(EjectionPolicy{ConsecutiveFailures: 1, MinBackoff: time.Second, MaxBackoff: time.Second, JitterRatio: 0.5})
	a := pool.Endpoints()[0]
	var lo, hi time.Duration = time.Hour, 0
	for range 200 {
		a.Begin()(false)
		d := time.Duration(a.ejectedTill.Load() - clock.Now().UnixNano())
		lo, hi = min(lo, d), max(hi, d)
		clock.Advance(2 * time.Second)
		a.Begin()(true)
	}
	if lo < time.Second || hi > 1500*time.Millisecond || hi-lo < 300*time.Millisecond {
		t.Errorf("penalties ranged %v..%v, want spread over 1s..1.5s", lo, hi)
	}
}

// TestProbationGetsARealRequest: once its penalty is over, an endpoint on
// probation gets the next request even though peak-EWMA rates it costly.
func TestProbationGetsARealRequest(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	pool := newTestPool(NewP2CPeakEWMA(), clock, "bad", "good")
	pool.SetEjection(EjectionPolicy{ConsecutiveFailures: 1, MinBackoff: time.Second, MaxBackoff: time.Second, FailFast: true})
	bad := pool.Endpoints()[0]
	bad.Begin()(false)
	for range 20 {
		if e, _ := pool.Pick(); e == bad {
			t.Fatal("picked the ejected endpoint")
		}
	}
	clock.Advance(time.Second)
	e, _ := pool.Pick()
	if e != bad {
		t.Fatalf("after the penalty Pick = %s, want the endpoint on probation", e.Addr)
	}
	done := e.Begin()
	if e2, _ := pool.Pick(); e2 == bad {
		t.Error("a second probe while the first is in flight")
	}
	done(true)
	if bad.Probation() {
		t.Error("still on probation after a successful probe")
	}
}
