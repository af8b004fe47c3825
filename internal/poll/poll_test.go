package poll

import (
	"sync/atomic"
	"testing"
	"time"
)

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestUntil(t *testing.T) {
	var n atomic.Int32
	Until(t, time.Second, "third call", func() bool { return n.Add(1) == 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}

	r := &recorder{TB: t}
	start := time.Now()
	Until(r, 50*time.Millisecond, "never", func() bool { return false })
	if !r.failed {
		t.Error("a condition never true did not fail the test")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 50ms", d)
	}
}
