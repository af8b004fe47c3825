package policyclient

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
)

// Options configure a Client.
type Options struct {
	Log *slog.Logger
	// Workload is "namespace:pod".
	Workload string
	// Static is the proxy's static configuration (its default policy,
	// probes, cluster networks). Until the control plane has sent a port
	// a usable policy, connections to it wait up to FirstWait and are then
	// decided by Static's configuration with a deny default (the pod's
	// probes still admitted): a port never falls open because its policy
	// is late, unusable or the control plane unreachable.
	Static *authz.Static
	// Cluster are the networks the cluster-* defaults admit.
	Cluster []authz.Network
	// FirstWait bounds how long a connection waits for a port's first
	// policy (default 1 s); after that the static default applies until
	// the control plane answers.
	FirstWait time.Duration
}

// Client is an authz.Source fed by the InboundPolicies service.
type Client struct {
	pending *authz.Static // deny, with Static's probes and networks
	api     policyv1.InboundPoliciesClient
	o       Options
	ctx     context.Context
	mu      sync.Mutex
	port    map[uint16]*portWatch
}

type portWatch struct {
	cur    atomic.Pointer[authz.Policy]
	ready  chan struct{}
	once   sync.Once
	gaveUp atomic.Bool
}

// New returns a client; watches run until ctx ends.
func New(ctx context.Context, api policyv1.InboundPoliciesClient, o Options) *Client {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.FirstWait <= 0 {
		o.FirstWait = time.Second
	}
	var sc authz.StaticConfig
	if o.Static != nil {
		sc = o.Static.Config()
	}
	sc.Default, sc.RequireIdentity = authz.Deny, nil
	pending, err := authz.NewStatic(sc)
	if err != nil {
		panic(fmt.Sprintf("policyclient: the deny default does not compile: %v", err)) // a constant: cannot happen
	}
	return &Client{pending: pending, api: api, o: o, ctx: ctx, port: map[uint16]*portWatch{}}
}

// MaxWatchedPorts bounds the ports a proxy watches: every new port a
// client (or a port scan) tries would otherwise open a stream for good.
// Ports beyond it get the fail-closed pending policy.
const MaxWatchedPorts = 256

// Policy returns the port's latest policy, starting its watch on first use.
func (c *Client) Policy(port uint16) *authz.Policy {
	w := c.watch(port)
	if w == nil {
		return c.pending.Policy(port)
	}
	if p := w.cur.Load(); p != nil {
		return p
	}
	if !w.gaveUp.Load() {
		t := time.NewTimer(c.o.FirstWait)
		select {
		case <-w.ready:
		case <-t.C:
			w.gaveUp.Store(true)
			c.o.Log.Warn("no usable inbound policy from the control plane yet; denying the port's connections (probes admitted) until one arrives", "port", port)
		}
		t.Stop()
		if p := w.cur.Load(); p != nil {
			return p
		}
	}
	return c.pending.Policy(port)
}

// Watched reports whether the port has received a policy.
func (c *Client) Watched(port uint16) bool {
	c.mu.Lock()
	w := c.port[port]
	c.mu.Unlock()
	return w != nil && w.cur.Load() != nil
}

func (c *Client) watch(port uint16) *portWatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.port[port]
	if w == nil {
		if len(c.port) >= MaxWatchedPorts {
			c.o.Log.Warn("too many inbound ports watched; denying this one", "port", port, "max", MaxWatchedPorts)
			return nil
		}
		w = &portWatch{ready: make(chan struct{})}
		c.port[port] = w
		go c.run(port, w)
	}
	return w
}

// run keeps the port's watch open, reconnecting with backoff; a policy
// that does not decode or compile is logged and the previous one kept.
func (c *Client) run(port uint16, w *portWatch) {
	backoff := 100 * time.Millisecond
	for c.ctx.Err() == nil {
		stream, err := c.api.Watch(c.ctx, &policyv1.InboundRequest{Workload: c.o.Workload, Port: uint32(port)})
		for err == nil {
			var m *policyv1.InboundPolicy
			if m, err = stream.Recv(); err != nil {
				break
			}
			backoff = 100 * time.Millisecond
			pp, perr := FromProto(m)
			var pol *authz.Policy
			if perr == nil {
				pol, perr = authz.Compile(pp, c.o.Cluster)
			}
			if perr != nil {
				c.o.Log.Error("inbound policy from the control plane is unusable; keeping the previous one", "port", port, "err", perr)
				continue
			}
			w.cur.Store(pol)
			w.once.Do(func() { close(w.ready) })
			c.o.Log.Debug("inbound policy updated", "port", port, "server", pp.Server.Name)
		}
		if c.ctx.Err() != nil {
			return
		}
		c.o.Log.Info("inbound policy watch interrupted; keeping the last policy", "port", port, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-c.ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
