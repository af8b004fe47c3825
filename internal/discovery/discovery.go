// Package discovery is the proxy's client of the destination service: it
// resolves a target to a balance.Pool kept up to date from a Watch stream,
// keeps the last known endpoints while the control plane is unreachable,
// reconnects with backoff, and drains terminating endpoints (no new
// requests; requests under way finish).
package discovery

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/balance"
)

// Resolver implements the proxy's Resolver over the destination service.
type Resolver struct {
	client   destinationv1.DestinationClient
	log      *slog.Logger
	ctx      context.Context
	wait     time.Duration // how long a first Resolve waits for discovery
	selector func() balance.Selector

	mu      sync.Mutex
	watches map[string]*watch
}

// Options configure a Resolver.
type Options struct {
	Log *slog.Logger
	// InitialWait bounds how long the first request for a target waits for
	// the control plane before forwarding to the target as addressed
	// (default 2s).
	InitialWait time.Duration
}

// New returns a Resolver whose watches live until ctx ends.
func New(ctx context.Context, client destinationv1.DestinationClient, o Options) *Resolver {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.InitialWait <= 0 {
		o.InitialWait = 2 * time.Second
	}
	return &Resolver{client: client, log: o.Log, ctx: ctx, wait: o.InitialWait,
		selector: func() balance.Selector { return balance.NewP2CPeakEWMA() }, watches: map[string]*watch{}}
}

type watch struct {
	target  string
	pool    *balance.Pool
	direct  *balance.Pool // the target itself, when discovery knows nothing
	known   atomic.Bool   // discovery says the target exists
	first   chan struct{} // closed at the first update
	once    sync.Once
	mu      sync.Mutex
	eps     map[string]*balance.Endpoint
	labels  map[string]string
	updates atomic.Int64
	routes  atomic.Pointer[[]route] // from the profile stream
}

// Resolve returns the pool for target, starting its watch on first use.
func (r *Resolver) Resolve(target string) (*balance.Pool, error) {
	r.mu.Lock()
	w, ok := r.watches[target]
	if !ok {
		w = &watch{target: target, pool: balance.NewPool(r.selector()), direct: balance.NewPool(r.selector()),
			first: make(chan struct{}), eps: map[string]*balance.Endpoint{}}
		w.direct.Update([]*balance.Endpoint{balance.NewEndpoint(target, 1, nil)})
		r.watches[target] = w
		go r.run(w)
		go r.runProfile(w)
	}
	r.mu.Unlock()
	select {
	case <-w.first:
	case <-time.After(r.wait):
		r.log.Warn("no answer from the destination service yet; forwarding to the target as addressed", "target", target)
	}
	if w.known.Load() {
		return w.pool, nil
	}
	return w.direct, nil
}

// run keeps one target's endpoint stream open until the resolver's context
// ends; the last known endpoints stay while it is down.
func (r *Resolver) run(w *watch) {
	r.keep(w, r.stream, slog.LevelInfo, "destination stream ended; keeping the last known endpoints")
}

// keep reruns stream with jittered backoff (100 ms doubling to 10 s) until
// the resolver's context ends, logging msg at level after each end.
func (r *Resolver) keep(w *watch, stream func(*watch) error, level slog.Level, msg string) {
	backoff := time.Duration(0)
	for r.ctx.Err() == nil {
		err := stream(w)
		if r.ctx.Err() != nil {
			return
		}
		backoff = min(max(backoff*2, 100*time.Millisecond), 10*time.Second)
		wait := backoff/2 + rand.N(backoff/2+1)
		r.log.Log(r.ctx, level, msg, "target", w.target, "err", err, "retry_in", wait)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (r *Resolver) stream(w *watch) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	s, err := r.client.Watch(ctx, &destinationv1.WatchRequest{Target: w.target})
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
		clear(w.eps)
	}
	switch k := u.Kind.(type) {
	case *destinationv1.Update_NoEndpoints:
		clear(w.eps)
		w.known.Store(k.NoEndpoints.GetExists())
	case *destinationv1.Update_Remove:
		for _, a := range k.Remove.GetAddrs() {
			delete(w.eps, a)
		}
	case *destinationv1.Update_Add:
		if k.Add.GetMetricLabels() != nil {
			w.labels = k.Add.GetMetricLabels()
		}
		for _, e := range k.Add.GetEndpoints() {
			w.eps[e.GetAddr()] = endpoint(e)
		}
		w.known.Store(true)
	}
	var live []*balance.Endpoint
	for _, e := range w.eps {
		if e.Meta["terminating"] != "true" { // draining: no new requests
			live = append(live, e)
		}
	}
	w.pool.Update(live)
	w.updates.Add(1)
	w.once.Do(func() { close(w.first) })
}

func endpoint(e *destinationv1.Endpoint) *balance.Endpoint {
	meta := map[string]string{}
	for k, v := range e.GetMetricLabels() {
		meta[k] = v
	}
	if e.GetProtocolHint().GetProtocol() == destinationv1.ProtocolHint_PROXY {
		meta[balance.MetaProxy] = "true"
		if id := e.GetTlsIdentity().GetDnsName(); id != "" {
			meta[balance.MetaIdentity] = id
		}
	}
	if z := e.GetZone(); z != "" {
		meta[balance.MetaZone] = z
	}
	if e.GetTerminating() {
		meta["terminating"] = "true"
	}
	weight := float64(e.GetWeight()) / 10000
	if weight <= 0 {
		weight = 1
	}
	return balance.NewEndpoint(e.GetAddr(), weight, meta)
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
