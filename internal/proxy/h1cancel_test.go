package proxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// interruptCounter is an h1Conn whose interrupt only counts.
func interruptCounter() (*h1Conn, *atomic.Int32) {
	var n atomic.Int32
	return &h1Conn{interrupt: func() { n.Add(1) }}, &n
}

// TestWatchRequest: a request whose context is its served connection's
// takes the connection's slot (no AfterFunc), is interrupted when that
// context ends and not after stop; any other context, or a taken slot,
// gets AfterFunc, with the same results.
func TestWatchRequest(t *testing.T) {
	type step int
	const (
		cancelThenStop step = iota // the context ends during the request
		stopThenCancel             // the request ends first
		cancelledFirst             // the context had ended before the request
	)
	for _, tc := range []struct {
		name     string
		ctx      func(s *srvCtx) (context.Context, context.CancelFunc)
		slotBusy bool
		wantSlot bool
	}{
		{name: "served connection's context", ctx: func(s *srvCtx) (context.Context, context.CancelFunc) { return s, s.cancel }, wantSlot: true},
		{name: "a value below it", ctx: func(s *srvCtx) (context.Context, context.CancelFunc) {
			return context.WithValue(s, connKey{}, nil), s.cancel
		}, wantSlot: true},
		{name: "a timeout of its own", ctx: func(s *srvCtx) (context.Context, context.CancelFunc) {
			return context.WithTimeout(s, time.Hour)
		}},
		{name: "slot taken", ctx: func(s *srvCtx) (context.Context, context.CancelFunc) { return s, s.cancel }, slotBusy: true},
		{name: "no served connection", ctx: func(*srvCtx) (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}},
	} {
		for _, st := range []step{cancelThenStop, stopThenCancel, cancelledFirst} {
			t.Run(tc.name+"/"+[]string{"cancel then stop", "stop then cancel", "cancelled first"}[st], func(t *testing.T) {
				s := newSrvCtx(context.Background())
				ctx, cancel := tc.ctx(s)
				pc, interrupts := interruptCounter()
				if st == cancelledFirst {
					cancel()
				}
				if tc.slotBusy { // by a request that has not stopped its watch yet
					other, _ := interruptCounter()
					s.inFlight.Store(other)
				}
				w := watchRequest(ctx, pc)
				if got := w.srv != nil; got != tc.wantSlot {
					t.Fatalf("in the served connection's slot: %v, want %v", got, tc.wantSlot)
				}
				var stopped bool
				switch st {
				case cancelThenStop:
					cancel()
					waitCount(t, interrupts, 1)
					stopped = w.stop()
				case stopThenCancel:
					stopped = w.stop()
					cancel()
				case cancelledFirst:
					waitCount(t, interrupts, 1)
					stopped = w.stop()
				}
				if want := st == stopThenCancel; stopped != want {
					t.Errorf("stop() = %v, want %v", stopped, want)
				}
				if w.stop() {
					t.Error("a second stop() = true, want false")
				}
				time.Sleep(20 * time.Millisecond) // an AfterFunc that should not run has had time to
				want := int32(1)
				if st == stopThenCancel {
					want = 0
				}
				if got := interrupts.Load(); got != want {
					t.Errorf("%d interrupts, want %d", got, want)
				}
				if tc.wantSlot && !tc.slotBusy && s.inFlight.Load() != nil {
					t.Error("the slot still holds the connection")
				}
			})
		}
	}
}

func waitCount(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.Load() < want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d interrupts after 5 s, want %d", n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestH1PairAllocs: a request through a plaintext proxy pair allocates at
// most 25 times in the two proxies (31 while each request registered
// context.AfterFunc and an upstream context on each proxy).
func TestH1PairAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector (make test runs this without it)")
	}
	one := h1PairExchange(t, func(backend string) string {
		addr, _, _ := pair(t, backend)
		return addr
	})
	for range 100 {
		one()
	}
	n := testing.AllocsPerRun(500, one)
	t.Logf("%.2f allocations per request through the pair", n)
	if n > 25.5 {
		t.Errorf("%.2f allocations per request through the pair, want at most 25", n)
	}
}
