package proxy

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/balance"
)

// Resolver maps a logical destination (a service authority host:port, or an
// original destination IP:port) to the pool of endpoints that serve it.
// The destination client (control plane) implements it too.
type Resolver interface {
	Resolve(dst string) (*balance.Pool, error)
}

// Route is what a destination's profile says about a request: its route's
// timeout, and whether a failed response may be retried.
type Route struct {
	Name      string
	Timeout   time.Duration
	Retryable bool
	// Failure classifies a response status; nil: 5xx are failures.
	Failure func(status int) bool
}

// RouteResolver finds the route of a request to dst (the destination
// service's client implements it from ServiceProfiles).
type RouteResolver interface {
	Route(dst, method, path string) (Route, bool)
}

// Route delegates to the fallback (explicit destinations have no routes).
func (r *StaticResolver) Route(dst, method, path string) (Route, bool) {
	if rr, ok := r.fallback.(RouteResolver); ok && r.named[dst] == nil {
		return rr.Route(dst, method, path)
	}
	return Route{}, false
}

// StaticResolver serves destinations configured up front (explicit mode);
// anything else goes to the fallback (the destination service) or, without
// one, to the address it names.
type StaticResolver struct {
	named    map[string]*balance.Pool
	fallback Resolver

	mu          sync.Mutex
	passthrough map[string]*balance.Pool
}

// maxPassthrough bounds the per-address pools kept for unknown destinations.
const maxPassthrough = 4096

// NewStaticResolver builds pools for the configured destinations, balanced
// with power-of-two-choices over peak-EWMA latency. fallback may be nil.
func NewStaticResolver(dsts map[string][]EndpointSpec, fallback Resolver) *StaticResolver {
	r := &StaticResolver{named: map[string]*balance.Pool{}, passthrough: map[string]*balance.Pool{}, fallback: fallback}
	for name, specs := range dsts {
		eps := make([]*balance.Endpoint, 0, len(specs))
		for _, s := range specs {
			eps = append(eps, newEndpoint(s))
		}
		pool := balance.NewPool(balance.NewP2CPeakEWMA())
		pool.Update(eps)
		r.named[name] = pool
	}
	return r
}

func newEndpoint(s EndpointSpec) *balance.Endpoint {
	var meta map[string]string
	if s.Proxy {
		meta = map[string]string{metaProxy: "true"}
		if s.Identity != "" {
			meta[metaIdentity] = s.Identity
		}
	}
	return balance.NewEndpoint(s.Addr, 1, meta)
}

// Endpoint metadata keys (shared with discovery).
const (
	metaProxy    = balance.MetaProxy
	metaIdentity = balance.MetaIdentity
)

// Resolve returns the configured pool for dst, or a single-endpoint pool that
// forwards to dst itself.
func (r *StaticResolver) Resolve(dst string) (*balance.Pool, error) {
	if p, ok := r.named[dst]; ok {
		return p, nil
	}
	if dst == "" {
		return nil, fmt.Errorf("no destination")
	}
	if r.fallback != nil {
		return r.fallback.Resolve(dst)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.passthrough[dst]; ok {
		return p, nil
	}
	if len(r.passthrough) >= maxPassthrough {
		clear(r.passthrough)
	}
	p := balance.NewPool(balance.NewP2CPeakEWMA())
	p.Update([]*balance.Endpoint{balance.NewEndpoint(dst, 1, nil)})
	r.passthrough[dst] = p
	return p, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) { return netip.ParseAddrPort(s) }
