package balance

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Selector picks one endpoint from a non-empty slice of available ones.
type Selector interface {
	Select(pool []*Endpoint) *Endpoint
}

// P2CPeakEWMA picks two distinct endpoints at random and keeps the one with
// the lower Load.
type P2CPeakEWMA struct {
	now func() time.Time
}

var _ Selector = (*P2CPeakEWMA)(nil)

// NewP2CPeakEWMA returns the default selector. The random source is the
// runtime's per-goroutine generator, safe for concurrent use.
func NewP2CPeakEWMA() *P2CPeakEWMA { return &P2CPeakEWMA{now: time.Now} }

// Select implements Selector.
func (s *P2CPeakEWMA) Select(pool []*Endpoint) *Endpoint {
	n := len(pool)
	if n == 1 {
		return pool[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	now := s.now()
	if pool[j].Load(now) < pool[i].Load(now) {
		return pool[j]
	}
	return pool[i]
}

// RoundRobin cycles through the endpoints.
type RoundRobin struct{ next atomic.Uint64 }

var _ Selector = (*RoundRobin)(nil)

// Select implements Selector.
func (s *RoundRobin) Select(pool []*Endpoint) *Endpoint {
	return pool[(s.next.Add(1)-1)%uint64(len(pool))]
}

// Random picks uniformly.
type Random struct{}

var _ Selector = Random{}

// Select implements Selector.
func (Random) Select(pool []*Endpoint) *Endpoint { return pool[rand.IntN(len(pool))] }
