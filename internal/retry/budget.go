// Package retry bounds retries with a budget: retries may add at most a ratio
// of the recent request volume plus a fixed number per second, so that a
// failing destination is not hammered by a retry storm.
package retry

import (
	"net/http"
	"sync"
	"time"
)

// Budget is a sliding-window retry budget. The zero value is not usable; use
// NewBudget. It is safe for concurrent use.
type Budget struct {
	ratio     float64
	minPerSec float64
	now       func() time.Time

	mu      sync.Mutex
	buckets [window]bucket
}

const window = 10 // seconds

type bucket struct {
	sec      int64
	requests int
	retries  int
}

// NewBudget allows, over any 10 s window, retries up to ratio × requests +
// minPerSec × 10. Linkerd's default is ratio 0.2 and 10 per second.
func NewBudget(ratio, minPerSec float64) *Budget {
	return &Budget{ratio: ratio, minPerSec: minPerSec, now: time.Now}
}

func (b *Budget) slot(now int64) *bucket {
	s := &b.buckets[now%window]
	if s.sec != now {
		*s = bucket{sec: now}
	}
	return s
}

// Deposit records one original (non-retry) request.
func (b *Budget) Deposit() {
	now := b.now().Unix()
	b.mu.Lock()
	b.slot(now).requests++
	b.mu.Unlock()
}

// Withdraw asks for one retry; it reports whether the budget allows it and,
// if so, records it.
func (b *Budget) Withdraw() bool {
	now := b.now().Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	var reqs, retries int
	for i := range b.buckets {
		if s := b.buckets[i]; now-s.sec < window {
			reqs += s.requests
			retries += s.retries
		}
	}
	allowed := b.ratio*float64(reqs) + b.minPerSec*window
	if float64(retries)+1 > allowed {
		return false
	}
	b.slot(now).retries++
	return true
}

// Idempotent reports whether a request with this method may be retried
// after a failure (RFC 9110 §9.2.2).
func Idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
