// Package proxy is Weft's data plane: the transparent sidecar proxy. It
// accepts connections redirected by iptables (or bound explicitly), detects
// their protocol, and forwards HTTP per request and everything else per
// connection to endpoints chosen by a load balancer, recording Linkerd's
// metrics as it goes.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/admin"
	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/metrics"
	"github.com/weftmesh/weft/internal/origdst"
	"github.com/weftmesh/weft/internal/retry"
	"github.com/weftmesh/weft/internal/serving"
	reqtap "github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/target"
	"github.com/weftmesh/weft/internal/trace"
)

// Proxy is one running sidecar proxy.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	level    *slog.LevelVar
	metrics  *metrics.Registry
	resolver target.Resolver
	budget   *retry.Budget
	routing  routeState       // the route tables' compiled forms and mirrors in flight
	id       *certify.Manager // nil: identity disabled, no mTLS
	ready    atomic.Bool
	policies authz.Source // inbound authorization (authz.go)
	authzm   *authzMetrics
	tracer   *trace.Tracer     // nil: tracing off (observe.go)
	access   *accesslog.Logger // nil: no access log
	tap      *reqtap.Tap       // nil: tap disabled

	h1       *http.Transport // HTTP/1.1 upstreams
	h2       *h2Client       // HTTP/2 to h2c upstreams and Weft peers (h2pool.go)
	h1d      *h1Client       // HTTP/1.1 requests but upgrades and 100-continue, beside h1 (h1client.go)
	outbound *httpServer
	inbound  *httpServer

	listeners      []net.Listener
	ownPorts       map[uint16]bool // every bound port: never a forwarding target
	origDst        func(net.Conn) (netip.AddrPort, error)
	apps           appRoutes // app ports reached on the pod's own address (appdial.go)
	clientAddrOnce sync.Once // the client address could not be kept (clientaddr.go), logged once
	adminSrv       *http.Server
	ctrlSrv        *http.Server
	failed         chan error // a server that stopped serving on its own
	stopServing    context.CancelFunc
	drained        chan struct{} // closed once Shutdown has drained the data plane
	drainOnce      sync.Once
	served         chan struct{} // closed when serving.Run has returned servedErr
	servedErr      error

	mu       sync.Mutex
	opaque   map[net.Conn]struct{} // live opaque connections, force-closed after the grace period
	accepts  sync.WaitGroup        // accept loops still running
	handlers sync.WaitGroup        // connection handlers still running; Add only from accept loops
	closing  atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
}

// Options carry the proxy's collaborators.
type Options struct {
	Log     *slog.Logger
	Level   *slog.LevelVar
	Metrics *metrics.Registry
	// Discovery, when set, resolves targets not named by Destinations (the
	// destination service's client).
	Discovery target.Resolver
	// Identity, when set, provides the certificate for mTLS; the proxy is
	// not ready until it holds one.
	Identity *certify.Manager
	// Policies, when set, give each inbound port's authorization policy
	// (the policy controller's client); else the Config's static policy.
	Policies authz.Source
	// origDst stands in for iptables' SO_ORIGINAL_DST in tests (nil:
	// origdst.Lookup).
	origDst func(net.Conn) (netip.AddrPort, error)
	// AccessLog receives the access log (default os.Stderr), through a
	// queue of AccessLogQueue lines (default 4096).
	AccessLog      io.Writer
	AccessLogQueue int
}

// New validates cfg and prepares a proxy; Start binds its listeners.
func New(cfg Config, o Options) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Level == nil {
		o.Level = new(slog.LevelVar)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(metrics.Options{ConstLabels: cfg.MetricsLabels, IdleTimeout: cfg.MetricsIdleTimeout})
	}

	p := &Proxy{
		cfg:      cfg,
		log:      o.Log,
		level:    o.Level,
		metrics:  o.Metrics,
		resolver: NewStaticResolver(cfg.Destinations, o.Discovery),
		budget:   retry.NewBudget(cfg.RetryBudgetRatio, cfg.RetryBudgetMinPerSec),
		id:       o.Identity,
		opaque:   map[net.Conn]struct{}{},
		ownPorts: map[uint16]bool{},
		origDst:  o.origDst,
		failed:   make(chan error, 1),
		stop:     make(chan struct{}),
	}
	if p.id != nil {
		for _, c := range p.id.Collectors() {
			if err := p.metrics.Register(c); err != nil {
				return nil, fmt.Errorf("registering identity metrics: %w", err)
			}
		}
	}
	if p.policies = o.Policies; p.policies == nil {
		static, err := cfg.Policy.StaticPolicies()
		if err != nil {
			return nil, fmt.Errorf("inbound policy: %w", err)
		}
		p.policies = static
	}
	if p.origDst == nil {
		p.origDst = origdst.Lookup
	}
	p.authzm = newAuthzMetrics(cfg.MetricsLabels)
	for _, c := range p.authzm.collectors() {
		if err := p.metrics.Register(c); err != nil {
			return nil, fmt.Errorf("registering authorization metrics: %w", err)
		}
	}
	if cfg.TapSvcName != "" && p.id != nil {
		t, err := reqtap.New(reqtap.Config{Authorized: cfg.TapSvcName, TLS: p.id.ServerConfig(), ConstLabels: cfg.MetricsLabels, Log: p.log})
		if err != nil {
			return nil, err
		}
		for _, c := range t.Collectors() {
			if err := p.metrics.Register(c); err != nil {
				return nil, fmt.Errorf("registering tap metrics: %w", err)
			}
		}
		p.tap = t
	}
	if err := p.setupObservers(o.AccessLog, o.AccessLogQueue); err != nil {
		return nil, fmt.Errorf("tracing and access log: %w", err)
	}
	p.h1, p.h2 = p.newTransports()
	p.h1d = p.newH1Client()
	p.outbound = p.newHTTPServer(compat.Outbound)
	p.inbound = p.newHTTPServer(compat.Inbound)
	return p, nil
}

// Metrics returns the proxy's registry.
func (p *Proxy) Metrics() *metrics.Registry { return p.metrics }

// Ready reports whether the proxy is serving.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// listenerKind says how connections accepted on a listener are routed.
type listenerKind struct {
	direction string
	binding   string // explicit destination, or "" for transparent
	self      net.Addr
}

// bind is one address to listen on.
type bind struct {
	addr string
	kind listenerKind
}

// bindAll binds every address, returning the listeners in the same order
// (nil for an optional IPv6 address the namespace cannot have: the extra
// data addresses, listed after admin, control and the first outbound and
// inbound ones). On failure everything bound so far is closed.
func (p *Proxy) bindAll(all []bind) ([]net.Listener, error) {
	ls := make([]net.Listener, len(all))
	for i, b := range all {
		l, err := listenOn(b.addr)
		if err != nil && i >= 4 && b.kind.binding == "" && ipv6Unavailable(b.addr, err) {
			// Injected pods list [::] beside 0.0.0.0 for dual-stack
			// clusters; a pod without IPv6 simply has no such traffic.
			p.log.Info("IPv6 is not available in this network namespace; not listening on "+b.addr, "listener", b.kind.direction, "err", err)
			continue
		}
		if err != nil {
			for _, l := range ls {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("binding %s listener on %s: %w", b.kind.direction, b.addr, err)
		}
		ls[i] = l
	}
	for _, l := range ls {
		if l == nil {
			continue
		}
		p.listeners = append(p.listeners, l)
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
			p.ownPorts[ap.Port()] = true
		}
	}
	return ls, nil
}

// Start binds every listener and begins serving. It fails, having closed
// whatever it had bound, if any address cannot be bound.
func (p *Proxy) Start() error {
	// Order matters to Addrs: the first outbound and first inbound address
	// come before any extra ones.
	outs, ins := SplitAddrs(p.cfg.OutboundAddr), SplitAddrs(p.cfg.InboundAddr)
	binds := []bind{
		{outs[0], listenerKind{direction: compat.Outbound}},
		{ins[0], listenerKind{direction: compat.Inbound}},
	}
	for _, b := range p.cfg.Bindings {
		binds = append(binds, bind{b.Listen, listenerKind{direction: compat.Outbound, binding: b.Dst}})
	}
	for _, a := range outs[1:] {
		binds = append(binds, bind{a, listenerKind{direction: compat.Outbound}})
	}
	for _, a := range ins[1:] {
		binds = append(binds, bind{a, listenerKind{direction: compat.Inbound}})
	}
	all := append([]bind{{p.cfg.AdminAddr, listenerKind{direction: "admin"}}, {p.cfg.ControlAddr, listenerKind{direction: "control"}}}, binds...)
	ls, err := p.bindAll(all)
	if err != nil {
		return err
	}
	if p.cfg.AddrFile != "" {
		if err := serving.WriteAddrFile(p.cfg.AddrFile, addrNames(all, ls)); err != nil {
			p.closeListeners()
			return err
		}
	}
	adminL, ctrlL := ls[0], ls[1]
	accepts := make([]func(), 0, len(binds))
	for i, b := range binds {
		l := ls[i+2]
		if l == nil {
			continue // an optional IPv6 address in a pod without IPv6
		}
		k := b.kind
		k.self = l.Addr()
		accepts = append(accepts, func() { p.acceptLoop(l, k) })
	}
	var shutdown func()
	if p.cfg.ShutdownEndpoint {
		shutdown = p.Stop
	}
	p.adminSrv = admin.NewServer(admin.Options{Log: p.log, Metrics: p.metrics.Handler(), Ready: p.ready.Load,
		Level: p.level, Shutdown: shutdown, Environ: os.Environ})
	p.ctrlSrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "tap is not enabled on this proxy", http.StatusNotFound)
	})}
	p.serve(adminL, ctrlL)
	go p.metrics.RunExpiry(p.stop, min(time.Minute, max(p.cfg.MetricsIdleTimeout/2, time.Second)))
	for _, a := range accepts {
		p.accepts.Add(1)
		go func() {
			defer p.accepts.Done()
			a()
		}()
	}
	if p.id == nil {
		p.ready.Store(true)
	} else {
		go func() {
			select {
			case <-p.id.Ready():
				if !p.closing.Load() {
					p.ready.Store(true)
				}
			case <-p.stop:
			}
		}()
	}
	p.log.Info("proxy started", "outbound", p.cfg.OutboundAddr, "inbound", p.cfg.InboundAddr,
		"admin", adminL.Addr().String(), "control", ctrlL.Addr().String(), "bindings", len(p.cfg.Bindings))
	return nil
}

// addrNames names each bound address for the address file: admin,
// control, outbound, inbound, "bind NAME" per binding, and "outbound 2"…
// for further listeners of a direction.
func addrNames(all []bind, ls []net.Listener) map[string]string {
	out := make(map[string]string, len(ls))
	seen := map[string]int{}
	for i, b := range all {
		if ls[i] == nil {
			continue
		}
		name := b.kind.direction
		if b.kind.binding != "" {
			name = "bind " + b.kind.binding
		}
		if seen[name]++; seen[name] > 1 {
			name = fmt.Sprintf("%s %d", name, seen[name])
		}
		out[name] = ls[i].Addr().String()
	}
	return out
}

// Addrs returns the bound addresses in order: admin, control, the first
// outbound, the first inbound, one per binding, then any further outbound
// and inbound addresses (useful when configured with port 0).
func (p *Proxy) Addrs() []net.Addr {
	out := make([]net.Addr, len(p.listeners))
	for i, l := range p.listeners {
		out[i] = l.Addr()
	}
	return out
}

// serve runs the proxy's servers (the outbound and inbound HTTP servers
// fed by the accept loops, control, admin) under serving.Run. Shutdown ends
// them: the data plane drains first, admin stops last. If one stops
// serving on its own, its error is reported on Failed and the proxy stops.
func (p *Proxy) serve(adminL, ctrlL net.Listener) {
	control := serving.HTTP("control server", ctrlL, p.ctrlSrv, 0)
	if p.tap != nil {
		control = serving.Server{Name: "control server", Addr: ctrlL.Addr(),
			Serve: func() error { return p.tap.Serve(ctrlL) },
			Stop: func() {
				p.tap.Stop()
				ctrlL.Close() // in case Serve had not started its server yet
			}}
	}
	data := func(s *httpServer) serving.Server {
		return serving.Server{Name: s.direction + " HTTP server", Addr: s.ln.Addr(),
			Serve: func() error { return s.srv.Serve(s.ln) },
			Stop: func() {
				<-p.drained // Shutdown drains within the grace period
				s.srv.Close()
				s.h1.close()
				s.h2.Close()
			}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stopServing, p.drained, p.served = cancel, make(chan struct{}), make(chan struct{})
	servers := []serving.Server{data(p.outbound), data(p.inbound), control, serving.HTTP("admin server", adminL, p.adminSrv, 0)}
	go func() {
		defer close(p.served)
		p.servedErr = serving.Run(ctx, func(cause error) {
			if cause != nil {
				p.log.Error("a server stopped; shutting the proxy down", "err", cause)
				select {
				case p.failed <- cause:
				default:
				}
			}
			p.Stop()
		}, servers...)
	}()
}

// Failed delivers the error of a server that stopped serving on its own
// (the proxy is then stopping: the process should exit non-zero).
func (p *Proxy) Failed() <-chan error { return p.failed }

// Stop asks a running proxy to shut down; Shutdown performs the drain.
func (p *Proxy) Stop() { p.stopOnce.Do(func() { close(p.stop) }) }

// Done is closed when Stop has been called.
func (p *Proxy) Done() <-chan struct{} { return p.stop }

// Shutdown stops accepting, drains in-flight requests and connections for up
// to the grace period, then closes whatever remains.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.Stop()
	p.closing.Store(true)
	p.ready.Store(false)
	p.log.Info("shutting down", "grace", p.cfg.ShutdownGrace)
	if p.served != nil {
		p.stopServing() // the servers' Serve returning is no failure now
	}
	// Stop accepting on data listeners; keep admin alive until the end.
	for _, l := range p.listeners[2:] {
		l.Close()
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ShutdownGrace)
	defer cancel()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, s := range []*httpServer{p.outbound, p.inbound} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.h1.shutdown()
			s.h2.Shutdown()
			if err := s.srv.Shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("%s HTTP drain: %w", s.direction, err)
				s.srv.Close()
			}
		}()
	}
	drained := make(chan struct{})
	go func() {
		p.accepts.Wait() // no handler is added once every accept loop has returned
		p.handlers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		p.mu.Lock()
		n := len(p.opaque)
		for c := range p.opaque {
			c.Close()
		}
		p.mu.Unlock()
		p.outbound.h1.close()
		p.inbound.h1.close()
		p.outbound.h2.Close()
		p.inbound.h2.Close()
		p.log.Warn("grace period over; closing remaining connections", "opaque", n)
	}
	wg.Wait()
	p.h1.CloseIdleConnections()
	p.h1d.CloseIdleConnections()
	p.h2.CloseIdleConnections()
	if p.served != nil { // Start ran: control and admin stop now, in that order
		p.drainOnce.Do(func() { close(p.drained) })
		<-p.served
		errs = append(errs, p.servedErr)
	}
	p.closeListeners()
	p.closeObservers()
	p.log.Info("shutdown complete")
	return errors.Join(errs...)
}

func (p *Proxy) closeListeners() {
	for _, l := range p.listeners {
		l.Close()
	}
}

func (p *Proxy) acceptLoop(l net.Listener, k listenerKind) {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if p.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of spinning.
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			p.log.Error("accept failed", "listener", l.Addr().String(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p.handlers.Add(1)
		go func() {
			defer p.handlers.Done()
			p.handle(c, k)
		}()
	}
}

func (p *Proxy) trackOpaque(c net.Conn, add bool) {
	p.mu.Lock()
	if add {
		p.opaque[c] = struct{}{}
	} else {
		delete(p.opaque, c)
	}
	p.mu.Unlock()
}
