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
	policy *policyRef
	now    func() time.Time
}

// NewPool returns an empty pool balanced by sel.
func NewPool(sel Selector) *Pool {
	return &Pool{sel: sel, policy: newPolicyRef(defaultEjection), now: time.Now}
}

// SetEjection changes the ejection policy of every endpoint of the pool,
// present and future; an equal policy changes nothing.
func (p *Pool) SetEjection(e EjectionPolicy) {
	if *p.policy.Load() != e {
		p.policy.p.Store(&e)
	}
}

// Ejection returns the pool's ejection policy.
func (p *Pool) Ejection() EjectionPolicy { return *p.policy.Load() }

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
			e.policy = p.policy
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

// Pick chooses among available endpoints (see Endpoint.Available). When
// none is available it fails open and chooses among all of them, or, when
// the policy fails fast, returns ErrUnavailable.
func (p *Pool) Pick() (*Endpoint, error) {
	all := p.Endpoints()
	if len(all) == 0 {
		return nil, ErrNoEndpoints
	}
	now := p.now()
	unavailable := 0
	var probe *Endpoint
	for _, e := range all {
		if !e.Available(now) {
			unavailable++
		} else if probe == nil && e.probation.Load() {
			probe = e
		}
	}
	var e *Endpoint
	switch {
	case probe != nil:
		// An endpoint whose penalty is over gets the next request: a
		// real request is its probe (its latency cost would otherwise
		// keep the balancer away from it).
		e = probe
	case unavailable == 0:
		e = p.sel.Select(all)
	case unavailable == len(all):
		if p.policy.Load().FailFast {
			return nil, ErrUnavailable
		}
		return p.sel.Select(all), nil
	default:
		avail := make([]*Endpoint, 0, len(all)-unavailable)
		for _, e := range all {
			if e.Available(now) {
				avail = append(avail, e)
			}
		}
		e = p.sel.Select(avail)
	}
	if e.probation.Load() {
		e.probing.Store(true) // this request is the probe
	}
	return e, nil
}
