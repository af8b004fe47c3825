// Package balance chooses an endpoint for each request (or opaque
// connection). A Selector is a one-method policy over the available
// endpoints; the default is power of two choices over peak-EWMA latency
// weighted by in-flight requests. A Pool holds a destination's current
// endpoints, replaced atomically as discovery updates arrive, and ejects
// endpoints that keep failing, with backoff.
package balance

import (
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Peer is what discovery says about the process behind an endpoint.
// Read-only once the endpoint is made.
type Peer struct {
	// Meshed: the endpoint runs a Weft proxy, so HTTP may ride the
	// multiplexed proxy-to-proxy HTTP/2 transport.
	Meshed bool
	// Identity is the TLS identity the endpoint's proxy must present;
	// when set, traffic to it is mTLS.
	Identity string
	// Opaque: the endpoint's port is opaque (forward bytes, no detection).
	Opaque bool
	// OpaquePort is the proxy's inbound port for opaque transport
	// (internal/tunnel); 0 when the endpoint does not accept it.
	OpaquePort uint16
	// Zone is the endpoint's topology zone.
	Zone string
	// Labels name the endpoint in metrics (dst_namespace, dst_service,
	// dst_pod, dst_deployment, …).
	Labels map[string]string
}

// Equal reports whether two peers describe the same thing.
func (p Peer) Equal(o Peer) bool {
	return p.Meshed == o.Meshed && p.Identity == o.Identity && p.Opaque == o.Opaque &&
		p.OpaquePort == o.OpaquePort && p.Zone == o.Zone && maps.Equal(p.Labels, o.Labels)
}

// ErrNoEndpoints is returned by Pick on an empty pool.
var ErrNoEndpoints = errors.New("balance: no endpoints")

// ErrUnavailable is returned by Pick when every endpoint is ejected and
// the pool's policy fails fast.
var ErrUnavailable = errors.New("balance: every endpoint is ejected by failure accrual")

// Endpoint is one backend a balancer may choose. Safe for concurrent use.
type Endpoint struct {
	Addr   string  // host:port dialed
	Weight float64 // relative weight, > 0
	Peer   Peer    // read-only after creation

	inflight    atomic.Int64
	ejectedTill atomic.Int64 // unix nanoseconds; read on every pick without a lock
	clock       func() time.Time

	mu        sync.Mutex
	cost      float64   // peak-EWMA latency, nanoseconds
	stamp     time.Time // of the last observation (or of joining a pool): decay runs from here
	observed  bool      // a request has completed
	failures  int
	ejections int
	policy    *policyRef // the pool's, shared by its endpoints

	// probation: the penalty of the last ejection is over but no request
	// has succeeded since; one request at a time (probing) tests it.
	probation atomic.Bool
	probing   atomic.Bool
}

// Peak-EWMA parameters.
const (
	defaultRTT = 30 * time.Millisecond // a new endpoint's assumed latency: it gets tried
	decay      = 10 * time.Second
	// failurePenalty is the latency a failure counts as. Without it an
	// endpoint that refuses connections would fail fast, look cheap, and
	// attract the retries meant to avoid it.
	failurePenalty = time.Second
)

// NewEndpoint makes an endpoint; weight 0 means 1.
func NewEndpoint(addr string, weight float64, peer Peer) *Endpoint {
	if weight <= 0 {
		weight = 1
	}
	return &Endpoint{Addr: addr, Weight: weight, Peer: peer, clock: time.Now, cost: float64(defaultRTT), policy: defaultRef}
}

// measuredCost is the decayed latency estimate, if a request has completed.
func (e *Endpoint) measuredCost(now time.Time) (float64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.observed {
		return 0, false
	}
	return e.cost * math.Exp(-float64(now.Sub(e.stamp))/float64(decay)), true
}

// Begin records the start of a request to e. The returned function must be
// called exactly once, with success=false on a transport-level failure.
func (e *Endpoint) Begin() (done func(success bool)) {
	start := e.Start()
	return func(success bool) { e.End(start, success) }
}

// Start is Begin without the function (which is an allocation per
// request): the caller keeps the returned start and calls End exactly
// once with it.
func (e *Endpoint) Start() (start time.Time) {
	e.inflight.Add(1)
	return e.clock()
}

// End records the end of the request Start began at start.
func (e *Endpoint) End(start time.Time, success bool) {
	e.inflight.Add(-1)
	e.observe(start, success)
}

func (e *Endpoint) observe(start time.Time, success bool) {
	now := e.clock()
	rtt := float64(now.Sub(start))
	if !success {
		rtt = max(rtt, float64(failurePenalty))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if rtt > e.cost {
		e.cost = rtt // peak sensitivity: jump up at once
	} else {
		w := math.Exp(-float64(now.Sub(e.stamp)) / float64(decay))
		e.cost = e.cost*w + rtt*(1-w)
	}
	e.stamp = now
	e.observed = true
	probing := e.probing.Swap(false)
	if success {
		e.failures, e.ejections = 0, 0
		e.probation.Store(false)
		return
	}
	if e.Ejected(now) {
		return // a request sent before the ejection: already counted
	}
	e.failures++
	p := e.policy.Load()
	if e.failures >= p.ConsecutiveFailures || (probing && e.probation.Load()) {
		backoff := p.MinBackoff << min(e.ejections, 30)
		if backoff > p.MaxBackoff || backoff <= 0 {
			backoff = p.MaxBackoff
		}
		jitter := 1 + p.JitterRatio*rand.Float64()
		e.ejectedTill.Store(now.Add(time.Duration(float64(backoff) * jitter)).UnixNano())
		e.ejections++
		e.failures = 0
		e.probation.Store(true)
	}
}

// InFlight is the number of requests under way.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Ejected reports whether e is ejected at now.
func (e *Endpoint) Ejected(now time.Time) bool {
	return now.UnixNano() < e.ejectedTill.Load()
}

// Available reports whether e may be picked at now: it is not ejected,
// and when on probation no probe request is under way.
func (e *Endpoint) Available(now time.Time) bool {
	return !e.Ejected(now) && !(e.probation.Load() && e.probing.Load())
}

// Probation reports whether e's last ejection is over but no request has
// succeeded since.
func (e *Endpoint) Probation() bool { return e.probation.Load() }

// Load is the cost P2C compares: peak-EWMA latency (decayed toward zero
// while idle) × (in-flight + 1) / weight.
func (e *Endpoint) Load(now time.Time) float64 {
	e.mu.Lock()
	cost := e.cost
	if !e.stamp.IsZero() {
		cost *= math.Exp(-float64(now.Sub(e.stamp)) / float64(decay))
	}
	e.mu.Unlock()
	return cost * float64(e.inflight.Load()+1) / e.Weight
}

// EjectionPolicy says when a failing endpoint is taken out, and for how
// long (Linkerd's consecutive failure accrual): ConsecutiveFailures
// failures in a row eject it for MinBackoff, doubling with each ejection
// up to MaxBackoff, plus a random JitterRatio × the backoff. When the
// penalty is over the endpoint is on probation: one request at a time,
// the first success restores it, a failure ejects it again for longer.
type EjectionPolicy struct {
	ConsecutiveFailures int
	MinBackoff          time.Duration
	MaxBackoff          time.Duration
	JitterRatio         float64
	// FailFast: when every endpoint is ejected Pick fails with
	// ErrUnavailable; otherwise it fails open and picks among all.
	FailFast bool
}

var defaultEjection = EjectionPolicy{ConsecutiveFailures: 5, MinBackoff: time.Second, MaxBackoff: time.Minute, JitterRatio: 0.2}

// DefaultEjection is 5 consecutive failures, then 1 s doubling to 60 s,
// plus up to 20 % jitter, failing open.
func DefaultEjection() EjectionPolicy { return defaultEjection }

// policyRef is a pool's ejection policy, shared by its endpoints so that a
// change applies to all of them at once.
type policyRef struct {
	p atomic.Pointer[EjectionPolicy]
}

func newPolicyRef(e EjectionPolicy) *policyRef {
	r := &policyRef{}
	r.p.Store(&e)
	return r
}

func (r *policyRef) Load() *EjectionPolicy { return r.p.Load() }

var defaultRef = newPolicyRef(defaultEjection)
