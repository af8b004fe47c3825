package balance

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a destination's current endpoint set: replaced atomically by
// Update, read lock-free by Pick.
type Pool struct {
	sel    Selector
	eps    atomic.Pointer[[]*Endpoint]
	mu     sync.Mutex // serialises Update
	policy EjectionPolicy
	now    func() time.Time
}

// NewPool returns an empty pool balanced by sel.
func NewPool(sel Selector) *Pool {
	return &Pool{sel: sel, policy: defaultEjection, now: time.Now}
}

// SetEjection changes the ejection policy for endpoints added afterwards.
func (p *Pool) SetEjection(e EjectionPolicy) {
	p.mu.Lock()
	p.policy = e
	p.mu.Unlock()
}

// Update replaces the set. An endpoint whose Addr, weight and peer are
// unchanged keeps its statistics (the old object is kept); a changed one
// is replaced.
func (p *Pool) Update(eps []*Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := map[string]*Endpoint{}
	if cur := p.eps.Load(); cur != nil {
		for _, e := range *cur {
			old[e.Addr] = e
		}
	}
	// A new endpoint starts at the average cost of the measured ones (or
	// the default RTT), decaying from now: it is tried soon, whatever its
	// peers' latency, instead of waiting for a 30 ms guess to decay.
	now := p.now()
	var sum float64
	var measured int
	for _, o := range old {
		if c, ok := o.measuredCost(now); ok {
			sum += c
			measured++
		}
	}
	next := make([]*Endpoint, 0, len(eps))
	for _, e := range eps {
		if o, ok := old[e.Addr]; ok && o.Weight == e.Weight && o.Peer.Equal(e.Peer) {
			e = o
		} else {
			policy := p.policy
			e.policy = &policy
			e.clock = p.now
			e.mu.Lock()
			if measured > 0 {
				e.cost = sum / float64(measured)
			}
			e.stamp = now
			e.mu.Unlock()
		}
		next = append(next, e)
	}
	p.eps.Store(&next)
}

// Endpoints returns the current set (do not modify it).
func (p *Pool) Endpoints() []*Endpoint {
	if cur := p.eps.Load(); cur != nil {
		return *cur
	}
	return nil
}

// Pick chooses among available endpoints; when every endpoint is ejected it
// fails open and chooses among all of them.
func (p *Pool) Pick() (*Endpoint, error) {
	all := p.Endpoints()
	switch len(all) {
	case 0:
		return nil, ErrNoEndpoints
	case 1:
		return all[0], nil
	}
	now := p.now()
	ejected := 0
	for _, e := range all {
		if e.Ejected(now) {
			ejected++
		}
	}
	if ejected == 0 || ejected == len(all) {
		return p.sel.Select(all), nil
	}
	avail := make([]*Endpoint, 0, len(all)-ejected)
	for _, e := range all {
		if !e.Ejected(now) {
			avail = append(avail, e)
		}
	}
	return p.sel.Select(avail), nil
}
