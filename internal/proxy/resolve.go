package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/target"
)

// StaticResolver serves destinations configured up front (explicit mode);
// anything else goes to the fallback (the destination service) or, without
// one, to the address it names.
type StaticResolver struct {
	named    map[string]*balance.Pool
	fallback target.Resolver

	mu          sync.Mutex
	passthrough map[string]*balance.Pool
}

var _ target.Resolver = (*StaticResolver)(nil)

// maxPassthrough bounds the per-address pools kept for unknown destinations.
const maxPassthrough = 4096

// NewStaticResolver builds pools for the configured destinations, balanced
// with power-of-two-choices over peak-EWMA latency. fallback may be nil.
func NewStaticResolver(dsts map[string][]EndpointSpec, fallback target.Resolver) *StaticResolver {
	r := &StaticResolver{named: map[string]*balance.Pool{}, passthrough: map[string]*balance.Pool{}, fallback: fallback}
	for name, specs := range dsts {
		eps := make([]*balance.Endpoint, 0, len(specs))
		for _, s := range specs {
			peer := balance.Peer{Meshed: s.Proxy, Identity: s.Identity}
			if s.Proxy && s.Identity != "" {
				// The address is the peer proxy's inbound listener: it
				// takes the opaque transport too.
				if _, port, err := net.SplitHostPort(s.Addr); err == nil {
					peer.OpaquePort = portOf(port)
				}
			}
			eps = append(eps, balance.NewEndpoint(s.Addr, 1, peer))
		}
		pool := balance.NewPool(balance.NewP2CPeakEWMA())
		pool.Update(eps)
		r.named[name] = pool
	}
	return r
}

// Resolve returns the configured pool for dst, the fallback's answer, or a
// single-endpoint pool that forwards to dst itself.
func (r *StaticResolver) Resolve(dst string) (target.Destination, error) {
	if p, ok := r.named[dst]; ok {
		return target.Destination{Pool: p}, nil
	}
	if dst == "" {
		return target.Destination{}, fmt.Errorf("no destination")
	}
	if r.fallback != nil {
		return r.fallback.Resolve(dst)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.passthrough[dst]; ok {
		return target.Destination{Pool: p}, nil
	}
	if len(r.passthrough) >= maxPassthrough {
		clear(r.passthrough)
	}
	p := balance.NewPool(balance.NewP2CPeakEWMA())
	p.Update([]*balance.Endpoint{balance.NewEndpoint(dst, 1, balance.Peer{})})
	r.passthrough[dst] = p
	return target.Destination{Pool: p}, nil
}

func parseAddrPort(s string) (netip.AddrPort, error) { return netip.ParseAddrPort(s) }
