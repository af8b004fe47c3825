// Package discovery is the proxy's client of the destination service: it
// resolves a target to a target.Destination whose endpoint pool and profile
// are kept up to date from Watch and WatchProfile streams (and, with a
// policy controller, its routing table from OutboundPolicies), keeps the last
// known state while the control plane is unreachable, reconnects with
// backoff, drains terminating endpoints (no new requests; requests under way
// finish), and stops the watches of targets left unused for IdleTimeout, so
// a long-lived transparent proxy that meets many destinations stays bounded.
package discovery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/route"
	"github.com/weftmesh/weft/internal/target"
)

// Resolver implements target.Resolver over the destination service.
type Resolver struct {
	client   destinationv1.DestinationClient
	policy   policyv1.OutboundPoliciesClient // nil: no routing tables
	log      *slog.Logger
	ctx      context.Context
	wait     time.Duration // how long a first Resolve waits for discovery
	idle     time.Duration
	token    string
	selector func() balance.Selector

	mu      sync.Mutex
	watches map[string]*watch
}

var _ target.Resolver = (*Resolver)(nil)

// Options configure a Resolver.
type Options struct {
	Log *slog.Logger
	// InitialWait bounds how long the first request for a target waits for
	// the control plane before forwarding to the target as addressed
	// (default 2s).
	InitialWait time.Duration
	// IdleTimeout stops the watches of a target not resolved for this long
	// (default 1m); a later request starts them again.
	IdleTimeout time.Duration
	// ContextToken describes this proxy to the destination service
	// (Linkerd's LINKERD2_PROXY_DESTINATION_CONTEXT JSON), for topology
	// preferences.
	ContextToken string
	// Policy, when set, streams each target's routing table from the
	// policy controller's OutboundPolicies into Destination.Routes.
	Policy policyv1.OutboundPoliciesClient
}

// New returns a Resolver whose watches live until ctx ends.
func New(ctx context.Context, client destinationv1.DestinationClient, o Options) *Resolver {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.InitialWait <= 0 {
		o.InitialWait = 2 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	r := &Resolver{client: client, policy: o.Policy, log: o.Log, ctx: ctx, wait: o.InitialWait, idle: o.IdleTimeout, token: o.ContextToken,
		selector: func() balance.Selector { return balance.NewP2CPeakEWMA() }, watches: map[string]*watch{}}
	go r.evictIdle()
	return r
}

// watch is one target's pair of streams and what they said.
type watch struct {
	target   string
	ctx      context.Context
	cancel   context.CancelFunc
	lastUsed atomic.Int64 // unix nanoseconds of the last Resolve

	pool   *balance.Pool
	direct *balance.Pool // the target itself, when discovery knows nothing
	known  atomic.Bool   // discovery says the target exists

	first        chan struct{} // closed at the first endpoint update
	firstProfile chan struct{} // closed at the first profile (or the profile stream's first failure)
	firstPolicy  chan struct{} // closed at the first table (or the policy stream's first failure); nil without Policy
	onceE, onceP sync.Once
	oncePolicy   sync.Once
	ready        atomic.Bool // both closed: Resolve need not wait

	mu      sync.Mutex
	wire    map[string]*destinationv1.Endpoint // by address
	labels  map[string]string                  // the set's metric labels
	updates atomic.Int64
	profile atomic.Pointer[target.Profile]

	routes        *route.Current // nil without Policy
	policyUpdates atomic.Int64
}

// Resolve returns target's destination, starting its watches on first use.
// The first call for a target waits (up to InitialWait) for the destination
// service's first answer.
func (r *Resolver) Resolve(dst string) (target.Destination, error) {
	r.mu.Lock()
	w, ok := r.watches[dst]
	if !ok {
		w = r.start(dst)
	}
	w.lastUsed.Store(time.Now().UnixNano())
	r.mu.Unlock()
	if !w.ready.Load() {
		w.awaitFirst(r.wait, r.log)
	}
	d := target.Destination{Pool: w.direct, Profile: w.profile.Load(), Routes: w.routes}
	if w.known.Load() {
		d.Pool = w.pool
	}
	return d, nil
}

// start begins dst's watches; r.mu is held.
func (r *Resolver) start(dst string) *watch {
	ctx, cancel := context.WithCancel(r.ctx)
	w := &watch{target: dst, ctx: ctx, cancel: cancel, pool: balance.NewPool(r.selector()), direct: balance.NewPool(r.selector()),
		first: make(chan struct{}), firstProfile: make(chan struct{}), wire: map[string]*destinationv1.Endpoint{}}
	w.direct.Update([]*balance.Endpoint{balance.NewEndpoint(dst, 1, balance.Peer{})})
	r.watches[dst] = w
	go r.keep(w, r.stream, slog.LevelInfo, "destination stream ended; keeping the last known endpoints")
	go r.keep(w, r.streamProfile, slog.LevelDebug, "profile stream ended; keeping the last profile")
	if r.policy != nil {
		w.routes, w.firstPolicy = &route.Current{}, make(chan struct{})
		go r.keep(w, r.streamPolicy, slog.LevelDebug, "policy stream ended; keeping the last routing table")
	}
	return w
}

func (w *watch) awaitFirst(wait time.Duration, log *slog.Logger) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for _, ch := range []chan struct{}{w.first, w.firstProfile, w.firstPolicy} {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-t.C:
			log.Warn("no answer from the destination service yet; forwarding to the target as addressed", "target", w.target)
			return
		}
	}
	w.ready.Store(true)
}

// evictIdle stops, every half IdleTimeout, the watches of targets not
// resolved for IdleTimeout.
func (r *Resolver) evictIdle() {
	t := time.NewTicker(max(r.idle/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			cutoff := now.Add(-r.idle).UnixNano()
			r.mu.Lock()
			n := 0
			for dst, w := range r.watches {
				if w.lastUsed.Load() < cutoff {
					w.cancel()
					delete(r.watches, dst)
					n++
				}
			}
			r.mu.Unlock()
			if n > 0 {
				r.log.Debug("stopped idle destination watches", "count", n, "idle", r.idle)
			}
		}
	}
}

// Watches is the number of targets being watched.
func (r *Resolver) Watches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.watches)
}

// keep reruns stream with jittered backoff (100 ms doubling to 10 s) until
// the watch ends, logging msg at level after each end.
func (r *Resolver) keep(w *watch, stream func(*watch) error, level slog.Level, msg string) {
	backoff := time.Duration(0)
	for w.ctx.Err() == nil {
		err := stream(w)
		if w.ctx.Err() != nil {
			return
		}
		backoff = min(max(backoff*2, 100*time.Millisecond), 10*time.Second)
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.Log(w.ctx, level, msg, "target", w.target, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (r *Resolver) stream(w *watch) error {
	s, err := r.client.Watch(w.ctx, &destinationv1.WatchRequest{Target: w.target, ContextToken: r.token})
	if err != nil {
		return err
	}
	// The first message of every stream describes the whole set: it
	// replaces what was known (kept until now across an outage).
	for first := true; ; first = false {
		u, err := s.Recv()
		if err != nil {
			return err
		}
		w.apply(u, first)
	}
}

// apply folds one update into the pool; reset starts from an empty set.
func (w *watch) apply(u *destinationv1.Update, reset bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if reset {
		clear(w.wire)
	}
	switch k := u.Kind.(type) {
	case *destinationv1.Update_NoEndpoints:
		clear(w.wire)
		w.known.Store(k.NoEndpoints.GetExists())
	case *destinationv1.Update_Remove:
		for _, a := range k.Remove.GetAddrs() {
			delete(w.wire, a)
		}
	case *destinationv1.Update_Add:
		if k.Add.GetMetricLabels() != nil {
			w.labels = k.Add.GetMetricLabels()
		}
		for _, e := range k.Add.GetEndpoints() {
			w.wire[e.GetAddr()] = e
		}
		w.known.Store(true)
	}
	live := make([]*balance.Endpoint, 0, len(w.wire))
	for _, e := range w.wire {
		if !e.GetTerminating() { // draining: no new requests
			live = append(live, endpoint(e, w.labels))
		}
	}
	w.pool.Update(live)
	w.updates.Add(1)
	w.onceE.Do(func() { close(w.first) })
}

// endpoint types a wire endpoint; the set's labels come first, the
// endpoint's own override them.
func endpoint(e *destinationv1.Endpoint, setLabels map[string]string) *balance.Endpoint {
	labels := make(map[string]string, len(setLabels)+len(e.GetMetricLabels()))
	for k, v := range setLabels {
		labels[k] = v
	}
	for k, v := range e.GetMetricLabels() {
		labels[k] = v
	}
	hint := e.GetProtocolHint()
	peer := balance.Peer{
		Meshed: e.GetMeshed() || hint.GetProtocol() == destinationv1.ProtocolHint_PROXY,
		Opaque: hint.GetProtocol() == destinationv1.ProtocolHint_OPAQUE,
		Zone:   e.GetZone(),
		Labels: labels,
	}
	if peer.Meshed {
		peer.Identity = e.GetTlsIdentity().GetDnsName()
		if p := hint.GetOpaqueTransport().GetInboundPort(); p > 0 && p <= 65535 {
			peer.OpaquePort = uint16(p)
		}
	}
	weight := float64(e.GetWeight()) / 10000
	if weight <= 0 {
		weight = 1
	}
	return balance.NewEndpoint(e.GetAddr(), weight, peer)
}

// Updates reports how many updates a target's watch has applied (for tests
// and debugging).
func (r *Resolver) Updates(target string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.watches[target]; ok {
		return w.updates.Load()
	}
	return 0
}
