// Package route holds a Service's outbound routing table as the proxy uses
// it: the HTTPRoutes and GRPCRoutes attached to the Service (Gateway API
// gateway.networking.k8s.io/v1 and Linkerd's policy.linkerd.io), with their
// matches, filters, weighted backends, timeouts and retries, plus the
// Service's own defaults (Linkerd's timeout.linkerd.io, retry.linkerd.io
// and balancer.linkerd.io annotations).
//
// The types are plain data: the control plane builds them from Kubernetes
// objects (and validates them there), the policy API carries them to the
// proxy, and the proxy compiles them into matchers. A Table is immutable
// once published; a new version replaces it whole (Current).
package route

import (
	"sync/atomic"
	"time"
)

// Current holds the latest Table of a destination; its zero value holds
// none. Safe for concurrent use.
type Current struct{ p atomic.Pointer[Table] }

// Load returns the latest table, nil when none is known. A nil *Current
// holds none.
func (c *Current) Load() *Table {
	if c == nil {
		return nil
	}
	return c.p.Load()
}

// Store publishes t, replacing the previous table.
func (c *Current) Store(t *Table) { c.p.Store(t) }

// Table is the routing table of one parent: a Service port.
type Table struct {
	Parent Parent
	// HTTP and GRPC are the routes attached to the parent. Precedence
	// among them is the Gateway API's (the proxy orders matches), not the
	// slice order.
	HTTP []HTTPRoute
	GRPC []GRPCRoute
	// Defaults apply to requests that match no route, and fill what a
	// matching route leaves unset: the Service's annotations.
	Defaults Policy
	// Accrual is the parent's circuit breaker (balancer.linkerd.io
	// annotations); nil: only transport failures eject endpoints.
	Accrual *FailureAccrual
}

// Parent names the Service port routes attach to.
type Parent struct {
	Namespace string
	Name      string
	Port      uint16
	// Authority is "name.ns.svc.<cluster-domain>:port": the default
	// backend of requests that match no route.
	Authority string
}

// Meta identifies a route object, for metrics labels and logs.
type Meta struct {
	Group     string // gateway.networking.k8s.io or policy.linkerd.io
	Kind      string // HTTPRoute or GRPCRoute
	Namespace string
	Name      string
	// Created orders routes of equal precedence (older first), then
	// Namespace/Name.
	Created time.Time
}

// HTTPRoute is one HTTPRoute attached to the parent.
type HTTPRoute struct {
	Meta      Meta
	Hostnames []string
	Rules     []HTTPRule
	Policy    Policy // the route's annotations (timeouts, retries)
}

// HTTPRule is one of a route's rules.
type HTTPRule struct {
	// Matches: any one matching selects the rule. Empty matches every
	// request (as a PathPrefix "/" match).
	Matches  []HTTPMatch
	Filters  []Filter
	Backends []Backend // empty: the parent's default backend
	Timeouts Timeouts
	Retry    *Retry // the rule's Gateway API retry field; nil: unset
}

// HTTPMatch is a Gateway API HTTPRouteMatch: every part set must match.
type HTTPMatch struct {
	Path    *PathMatch
	Headers []ValueMatch
	Query   []ValueMatch
	Method  string // empty: any
}

// PathKind is how a PathMatch compares.
type PathKind uint8

// Path match kinds (Gateway API PathMatchType).
const (
	PathPrefix PathKind = iota // segment-wise prefix, "/" matches all
	PathExact
	PathRegex // RE2, matches the whole path
)

// PathMatch matches a request path.
type PathMatch struct {
	Kind  PathKind
	Value string
}

// ValueMatch matches a header (name case-insensitive) or query parameter
// (name exact) by exact value or by RE2 regular expression.
type ValueMatch struct {
	Name  string
	Value string
	Regex bool
}

// GRPCRoute is one GRPCRoute attached to the parent.
type GRPCRoute struct {
	Meta      Meta
	Hostnames []string
	Rules     []GRPCRule
	Policy    Policy
}

// GRPCRule is one of a GRPCRoute's rules.
type GRPCRule struct {
	Matches  []GRPCMatch // empty: every request
	Filters  []Filter
	Backends []Backend
	Timeouts Timeouts
	Retry    *Retry
}

// GRPCMatch is a Gateway API GRPCRouteMatch.
type GRPCMatch struct {
	Service string // empty: any
	Method  string // empty: any
	Regex   bool   // Service and Method are RE2 expressions
	Headers []ValueMatch
}

// Backend is a weighted backend Service port.
type Backend struct {
	Namespace string
	Name      string
	Port      uint16
	// Authority is "name.ns.svc.<cluster-domain>:port", resolved through
	// the destination service like any other authority.
	Authority string
	Weight    uint32 // 0 receives nothing
	Filters   []Filter
}

// FilterKind names a filter.
type FilterKind uint8

// Filter kinds (Gateway API HTTPRouteFilterType).
const (
	RequestHeaderModifier FilterKind = iota + 1
	ResponseHeaderModifier
	RequestRedirect
	URLRewrite
	RequestMirror
)

// Filter is one filter; exactly the field of its Kind is set.
type Filter struct {
	Kind            FilterKind
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Redirect        *Redirect
	Rewrite         *Rewrite
	Mirror          *Mirror
}

// Header is a header name and value.
type Header struct{ Name, Value string }

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// PathModifierKind is how a redirect or rewrite changes the path.
type PathModifierKind uint8

// Path modifier kinds (Gateway API HTTPPathModifierType).
const (
	ReplaceFullPath PathModifierKind = iota + 1
	ReplacePrefixMatch
)

// PathModifier replaces the full path or the matched prefix.
type PathModifier struct {
	Kind  PathModifierKind
	Value string
}

// Redirect answers with a redirect instead of forwarding.
type Redirect struct {
	Scheme     string // empty: the request's
	Hostname   string // empty: the request's
	Path       *PathModifier
	Port       uint16 // 0: the scheme's default or the request's
	StatusCode int    // 301 or 302 (default 302)
}

// Rewrite changes the request before it is forwarded.
type Rewrite struct {
	Hostname string
	Path     *PathModifier
}

// Mirror sends a copy of matching requests to another backend, fire and
// forget: its response is discarded.
type Mirror struct {
	Backend Backend
	// Percent of requests mirrored, 0 < Percent <= 100 (Gateway API
	// percent or fraction, normalised).
	Percent float64
}

// Timeouts bound a request. Zero: unset.
type Timeouts struct {
	// Request bounds the whole request, retries included (Gateway API
	// timeouts.request, timeout.linkerd.io/request).
	Request time.Duration
	// Backend bounds each attempt (timeouts.backendRequest,
	// timeout.linkerd.io/response).
	Backend time.Duration
	// Idle bounds the time without request or response data
	// (timeout.linkerd.io/idle).
	Idle time.Duration
}

// Retry says which failed responses are retried and how often.
type Retry struct {
	// HTTPStatuses are the retried HTTP statuses (retry.linkerd.io/http,
	// Gateway API retry.codes). Ranges are expanded.
	HTTPStatuses []uint16
	// GRPCCodes are the retried gRPC status codes by number
	// (retry.linkerd.io/grpc names mapped to codes).
	GRPCCodes []uint32
	// Limit is the number of retries after the first attempt
	// (retry.linkerd.io/limit, Gateway API attempts).
	Limit int
	// Timeout bounds each attempt when retrying (retry.linkerd.io/timeout).
	Timeout time.Duration
	// Backoff is the base delay between attempts (Gateway API backoff).
	Backoff time.Duration
}

// Policy is what annotations on a Service or route set.
type Policy struct {
	Timeouts Timeouts
	Retry    *Retry
}

// FailureAccrual is Linkerd's consecutive-failures circuit breaker.
type FailureAccrual struct {
	MaxFailures int           // consecutive failures that eject (default 7)
	MinPenalty  time.Duration // first ejection (default 1s)
	MaxPenalty  time.Duration // backoff cap (default 1m)
	JitterRatio float64       // 0..100 (default 0.5)
}
