// Package balance is a scratch stand-in.
package balance

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

type Endpoint struct {
	Addr     string
	Weight   float64
	Meta     map[string]string
	inflight atomic.Int64
	mu       sync.Mutex
	ewma     float64
}

func NewEndpoint(addr string, w float64, meta map[string]string) *Endpoint {
	return &Endpoint{Addr: addr, Weight: w, Meta: meta, ewma: 0.03}
}
func (e *Endpoint) Begin() func(bool) {
	e.inflight.Add(1)
	s := time.Now()
	return func(ok bool) {
		e.inflight.Add(-1)
		d := time.Since(s).Seconds()
		if !ok {
			d = 1
		}
		e.mu.Lock()
		if d > e.ewma {
			e.ewma = d
		} else {
			e.ewma = e.ewma*0.9 + d*0.1
		}
		e.mu.Unlock()
	}
}
func (e *Endpoint) load() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ewma * float64(e.inflight.Load()+1)
}

type Selector interface{ Select([]*Endpoint) *Endpoint }
type P2CPeakEWMA struct{ n atomic.Uint64 }

func NewP2CPeakEWMA(seed uint64) *P2CPeakEWMA { return &P2CPeakEWMA{} }
func (p *P2CPeakEWMA) Select(pool []*Endpoint) *Endpoint {
	if len(pool) == 1 {
		return pool[0]
	}
	i := p.n.Add(7) % uint64(len(pool))
	j := (i + 1 + p.n.Add(3)%uint64(len(pool)-1)) % uint64(len(pool))
	if pool[i].load() <= pool[j].load() {
		return pool[i]
	}
	return pool[j]
}

type Pool struct {
	sel Selector
	eps atomic.Pointer[[]*Endpoint]
}

var ErrNoEndpoints = errors.New("no endpoints")

func NewPool(s Selector) *Pool         { return &Pool{sel: s} }
func (p *Pool) Update(eps []*Endpoint) { p.eps.Store(&eps) }
func (p *Pool) Endpoints() []*Endpoint { return *p.eps.Load() }
func (p *Pool) Pick() (*Endpoint, error) {
	e := p.eps.Load()
	if e == nil || len(*e) == 0 {
		return nil, ErrNoEndpoints
	}
	return p.sel.Select(*e), nil
}
