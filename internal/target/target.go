// Package target is what the proxy knows about a logical destination (a
// service authority or an original destination IP:port): the pool of its
// endpoints, each with typed facts from discovery (balance.Peer), and its
// profile (whether it is opaque, its routes with timeouts and retries).
// The proxy consumes destinations through Resolver; its static
// configuration and the destination service's client (internal/discovery)
// implement it, neither importing the other.
package target

import (
	"regexp"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/route"
)

// Resolver maps a logical destination to what serves it.
type Resolver interface {
	// Resolve returns dst's destination, starting discovery on first use.
	Resolve(dst string) (Destination, error)
}

// Destination is a logical destination at the moment it was resolved.
type Destination struct {
	// Pool holds the endpoints, kept up to date by discovery.
	Pool *balance.Pool
	// Profile is nil when nothing is known beyond the endpoints.
	Profile *Profile
	// Routes holds the destination's outbound routing table (HTTPRoutes,
	// GRPCRoutes, the Service's timeout, retry and failure-accrual
	// annotations) as the policy controller last sent it; nil, or a
	// Current holding no table, when none is known.
	Routes *route.Current
}

// Opaque reports whether connections to d skip protocol detection: its
// profile says so, or discovery marks its endpoints' port opaque.
func (d Destination) Opaque() bool {
	if d.Profile != nil && d.Profile.Opaque {
		return true
	}
	if d.Pool == nil {
		return false
	}
	for _, e := range d.Pool.Endpoints() {
		if e.Peer.Opaque {
			return true
		}
	}
	return false
}

// Profile is what a destination's profile says beyond endpoints.
type Profile struct {
	// Opaque: the destination's port skips protocol detection.
	Opaque bool
	// Routes are tried in order; the first match wins.
	Routes []Route
}

// Route finds the route of a request; false when none matches.
func (p *Profile) Route(method, path string) (Route, bool) {
	if p == nil {
		return Route{}, false
	}
	for _, rt := range p.Routes {
		if (rt.Method == "" || rt.Method == method) && (rt.Path == nil || rt.Path.MatchString(path)) {
			return rt, true
		}
	}
	return Route{}, false
}

// Route is a profile route: the requests it matches get its timeout and,
// when retryable, have failed responses retried.
type Route struct {
	Name      string
	Method    string         // exact; empty: any
	Path      *regexp.Regexp // anchored; nil: any
	Timeout   time.Duration  // bounds the whole request, retries included (0: none)
	Retryable bool
	// Failure classifies a response status; nil: 5xx are failures.
	Failure func(status int) bool
}

// Failed classifies a response status for retries.
func (rt Route) Failed(status int) bool {
	if rt.Failure != nil {
		return rt.Failure(status)
	}
	return status >= 500
}
