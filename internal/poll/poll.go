// Package poll waits, in tests, for a condition that another goroutine or
// process makes true: it checks every 10 ms and fails the test after a
// bound.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until checks.
const Interval = 10 * time.Millisecond

// Until returns once cond is true, or fails t (naming what) when it is
// still false after within.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(Interval) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
			return
		}
	}
}
