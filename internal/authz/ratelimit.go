package authz

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Rate-limit scopes (the ratelimit_scope label).
const (
	ScopeTotal    = "total"
	ScopeIdentity = "identity"
	ScopeOverride = "override"
)

// MaxTrackedIdentities bounds the per-identity buckets a limiter keeps.
const MaxTrackedIdentities = 10000

// burstWindow is how many seconds' worth of requests may arrive at once: a
// bucket holds rate×burstWindow tokens (at least two), as Linkerd's
// per-second quotas do, so that a client's uneven pace does not cost it
// capacity; over any window the admitted count is at most rate×window
// plus one burst.
const burstWindow = time.Second

// Limiter enforces an HTTPLocalRateLimitPolicy: token buckets for the total
// rate and for each client identity (unauthenticated clients share the
// identity ""), with per-client overrides. Memory is bounded by
// MaxTrackedIdentities.
type Limiter struct {
	rl        RateLimit
	overrides map[string]float64
	now       func() time.Time
	max       int

	mu    sync.Mutex
	total *bucket
	ids   map[string]*bucket
}

type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate float64, now time.Time) *bucket {
	burst := math.Max(2, rate*burstWindow.Seconds())
	return &bucket{rate: rate, burst: burst, tokens: burst, last: now}
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(b.burst, b.tokens+dt*b.rate)
		b.last = now
	}
}

func (b *bucket) take(now time.Time) bool {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// NewLimiter validates rl and returns its limiter.
func NewLimiter(rl RateLimit) (*Limiter, error) {
	bad := func(v float64) bool { return v < 0 || math.IsNaN(v) || math.IsInf(v, 0) }
	if bad(rl.Total) || bad(rl.Identity) {
		return nil, fmt.Errorf("rate limit %s: requests per second must be a non-negative number", rl.Meta.Name)
	}
	l := &Limiter{rl: rl, overrides: map[string]float64{}, now: time.Now, max: MaxTrackedIdentities, ids: map[string]*bucket{}}
	for _, o := range rl.Overrides {
		if bad(o.RequestsPerSecond) {
			return nil, fmt.Errorf("rate limit %s: override requests per second must be a non-negative number", rl.Meta.Name)
		}
		for _, c := range o.Clients {
			l.overrides[c] = o.RequestsPerSecond
		}
	}
	if rl.Total > 0 {
		l.total = newBucket(rl.Total, l.now())
	}
	return l, nil
}

// Meta names the HTTPLocalRateLimitPolicy.
func (l *Limiter) Meta() Meta { return l.rl.Meta }

// Allow takes a token for one request of a client identity; when it is
// refused, scope says which limit refused it.
func (l *Limiter) Allow(identity string) (ok bool, scope string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	rate, scope := l.rl.Identity, ScopeIdentity
	if r, ok := l.overrides[identity]; ok && identity != "" {
		rate, scope = r, ScopeOverride
	}
	var b *bucket
	if rate > 0 {
		key := scope + "/" + identity
		if b = l.ids[key]; b == nil {
			l.evict(now)
			b = newBucket(rate, now)
			l.ids[key] = b
		}
		if !b.take(now) {
			return false, scope
		}
	}
	if l.total != nil && !l.total.take(now) {
		if b != nil {
			b.tokens++ // not consumed: the total limit refused it
		}
		return false, ScopeTotal
	}
	return true, ""
}

// evict makes room for one more identity: buckets that have refilled are
// indistinguishable from new ones and go first, then the least recently used.
func (l *Limiter) evict(now time.Time) {
	if len(l.ids) < l.max {
		return
	}
	for k, b := range l.ids {
		b.refill(now)
		if b.tokens >= b.burst {
			delete(l.ids, k)
		}
	}
	for len(l.ids) >= l.max {
		var oldest string
		var t time.Time
		for k, b := range l.ids {
			if oldest == "" || b.last.Before(t) {
				oldest, t = k, b.last
			}
		}
		delete(l.ids, oldest)
	}
}

// Tracked is the number of per-identity buckets held.
func (l *Limiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}
