package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/httproute"
	"github.com/weftmesh/weft/internal/metrics"
	"github.com/weftmesh/weft/internal/retry"
	"github.com/weftmesh/weft/internal/route"
	"github.com/weftmesh/weft/internal/target"
)

// Routing limits.
const (
	// maxReplayBody is the largest request body kept for retries and
	// mirrors; larger bodies are streamed once and never retried.
	maxReplayBody = 64 << 10
	// maxMirrors bounds mirrored copies in flight per proxy; past it
	// copies are dropped (and counted).
	maxMirrors = 100
	// bodyWait bounds the wait for the rest of a request body that an
	// attempt did not read to its end, before a retry or a mirror copy.
	bodyWait = time.Second
	// mirrorTimeout bounds one mirrored copy.
	mirrorTimeout = 10 * time.Second
	// maxRetryBackoff caps the exponential backoff between attempts.
	maxRetryBackoff = 5 * time.Second
)

// Failure accrual defaults (Linkerd's balancer.linkerd.io annotations).
const (
	defaultAccrualFailures = 7
	defaultAccrualMin      = time.Second
	defaultAccrualMax      = time.Minute
	defaultAccrualJitter   = 0.5
)

// routeState is the per-proxy state of the routing engine.
type routeState struct {
	cache    httproute.Cache
	lastGood sync.Map                    // destination → *httproute.Table, the last table that compiled
	mirrors  atomic.Int64                // copies in flight
	warned   atomic.Pointer[route.Table] // the last table that failed to compile, logged once
}

// compile returns the compiled tbl of dst. The control plane validates tables;
// one that does not compile here is not applied, not even in part: the
// parent's last good table stays in use, or, without one, requests go to
// the Service itself under its annotations.
func (s *routeState) compile(dst string, tbl *route.Table, log *slog.Logger) *httproute.Table {
	ct, err := s.cache.Compile(tbl)
	if err == nil {
		if prev, ok := s.lastGood.Load(dst); !ok || prev.(*httproute.Table) != ct {
			s.lastGood.Store(dst, ct)
		}
		return ct
	}
	if s.warned.Swap(tbl) != tbl {
		log.Warn("ignoring a route table that does not compile", "dst", dst, "err", err)
	}
	if prev, ok := s.lastGood.Load(dst); ok {
		return prev.(*httproute.Table)
	}
	ct, _ = httproute.Compile(&route.Table{Parent: tbl.Parent, Defaults: tbl.Defaults, Accrual: tbl.Accrual})
	return ct
}

// outcome is what the client was answered, for the route metrics.
type outcome struct {
	status int
	grpc   string
	err    string
}

// forwardRoutes forwards an outbound request through dst's route table:
// the matching rule's filters, a backend picked by weight (each balanced
// by its own pool), the rule's timeouts and retries within the retry
// budget, and failure accrual on the backends' endpoints.
func (p *Proxy) forwardRoutes(w http.ResponseWriter, r *http.Request, info *connInfo, dst string, d target.Destination, tbl *route.Table) {
	start := time.Now()
	grpcReq := httproute.IsGRPC(r)
	ct := p.routing.compile(dst, tbl, p.log)
	m := ct.Match(r)
	tbl = ct.Source
	rule := m.Rule
	series := p.metrics.Route(routeLabels(tbl, rule, grpcReq))
	var out outcome
	defer func() { series.Response(out.status, out.grpc, out.err, time.Since(start)) }()
	fail := func(status, grpcCode int, errLabel, msg string) {
		out = outcome{status: status, err: errLabel, grpc: strconv.Itoa(grpcCode)}
		if grpcReq {
			out.status = http.StatusOK
			grpcProxyError(w, grpcCode, msg)
			return
		}
		proxyError(w, status, msg)
	}

	var respMods []*route.HeaderModifier
	var mirrors []*route.Mirror
	for _, f := range rule.Filters {
		switch f.Kind {
		case route.RequestHeaderModifier:
			httproute.ModifyHeaders(r.Header, f.RequestHeaders)
		case route.ResponseHeaderModifier:
			respMods = append(respMods, f.ResponseHeaders)
		case route.RequestRedirect:
			if f.Redirect == nil {
				continue
			}
			loc, code := httproute.RedirectLocation(r, f.Redirect, m.Prefix)
			w.Header().Set("Location", loc)
			w.WriteHeader(code)
			out.status = code
			return
		case route.URLRewrite:
			if rw := f.Rewrite; rw != nil {
				if rw.Hostname != "" {
					r.Host = rw.Hostname
				}
				if rw.Path != nil {
					r.URL.Path, r.URL.RawPath = httproute.ModifyPath(r.URL.Path, rw.Path, m.Prefix), ""
				}
			}
		case route.RequestMirror:
			if f.Mirror != nil {
				mirrors = append(mirrors, f.Mirror)
			}
		}
	}
	if rule.Unweighted {
		fail(http.StatusInternalServerError, grpcUnavailable, compat.RouteErrorUnexpected, "every backend of the route has weight 0")
		return
	}

	body := newReplayBody(r)
	p.budget.Deposit()
	ctx := r.Context()
	timeout := rule.Timeouts.Request
	if timeout == 0 {
		timeout = p.cfg.ResponseTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if len(mirrors) > 0 {
		if body == nil {
			p.mirror(r, info, mirrors, nil, series)
		} else {
			// A body is copied once the primary has read all of it:
			// after the response.
			defer p.mirror(r, info, mirrors, body, series)
		}
	}

	pol := rule.Retry
	limit := 0
	if pol != nil {
		limit = max(pol.Limit, 1)
	}
	idempotent := retry.Idempotent(r.Method) && body == nil
	attemptTimeout := rule.Timeouts.Backend
	if pol != nil && pol.Timeout > 0 && (attemptTimeout == 0 || pol.Timeout < attemptTimeout) {
		attemptTimeout = pol.Timeout
	}
	accrual := accrualPolicy(tbl.Accrual)

	var err error
	for attempt := 0; ; attempt++ {
		b, weighted := rule.PickBackend()
		bd, bl := d, parentBackend(tbl)
		if weighted {
			bl = metrics.BackendLabels{Namespace: b.Namespace, Name: b.Name, Port: strconv.Itoa(int(b.Port))}
			if b.Authority == "" {
				// A backend the control plane could not resolve to a
				// Service (its status says why): the Gateway API's 500.
				fail(http.StatusInternalServerError, grpcUnavailable, compat.RouteErrorUnexpected, fmt.Sprintf("backend %s/%s is not a Service port", b.Namespace, b.Name))
				return
			}
			if b.Authority != dst && b.Authority != tbl.Parent.Authority {
				if bd, err = p.resolver.Resolve(b.Authority); err != nil || bd.Pool == nil {
					fail(http.StatusServiceUnavailable, grpcUnavailable, compat.RouteErrorUnexpected, fmt.Sprintf("resolving backend %s: %v", b.Authority, err))
					return
				}
			}
		}
		if accrual != nil {
			bd.Pool.SetEjection(*accrual)
		} else if bd.Pool.Ejection().FailFast {
			// The annotation was removed: back to the default policy.
			bd.Pool.SetEjection(balance.DefaultEjection())
		}
		ep, err := bd.Pool.Pick()
		if err != nil {
			msg := fmt.Sprintf("%s has no endpoints", bl.Name)
			if errors.Is(err, balance.ErrUnavailable) {
				msg = fmt.Sprintf("%s is in fail-fast: every endpoint is ejected by failure accrual", bl.Name)
			}
			fail(http.StatusServiceUnavailable, grpcUnavailable, compat.RouteErrorFailFast, msg)
			return
		}

		req := r
		var bRespMods []*route.HeaderModifier
		if weighted && len(b.Filters) > 0 {
			req = r.Clone(r.Context())
			for _, f := range b.Filters {
				switch f.Kind {
				case route.RequestHeaderModifier:
					httproute.ModifyHeaders(req.Header, f.RequestHeaders)
				case route.ResponseHeaderModifier:
					bRespMods = append(bRespMods, f.ResponseHeaders)
				}
			}
		}
		if body != nil {
			req = shallow(req)
			req.Body = body.attempt()
		}
		// The attempt's context: its timeout, and canceled by an idle
		// response body.
		var actx context.Context
		var acancel context.CancelFunc
		if attemptTimeout > 0 {
			actx, acancel = context.WithTimeout(ctx, attemptTimeout)
		} else {
			actx, acancel = context.WithCancel(ctx)
		}
		mt := p.upstreamTarget(info, ep, p.peerID(info, ep))
		p.spanOf(ctx).Peer(ep.Addr, mt.ServerID)
		mt.Authority = r.Host
		legacy := p.metrics.HTTP(mt)
		legacy.Request()
		series.BackendRequest(bl)
		astart := time.Now()
		done := ep.Begin()
		resp, err := p.roundTrip(actx, req, ep, info, false, false)
		retryable := false
		var why string
		if err != nil {
			done(false)
			status := errorStatus(actx, err)
			errLabel := compat.RouteErrorUnexpected
			if actx.Err() != nil {
				errLabel = compat.RouteErrorResponseTimeout
				if ctx.Err() != nil {
					errLabel = compat.RouteErrorRequestTimeout
				}
			}
			legacy.Response(status, "", false, time.Since(astart))
			series.BackendResponse(bl, 0, "", errLabel, time.Since(astart))
			acancel()
			retryable, why = pol != nil || idempotent, err.Error()
			if retryable && p.retryAgain(ctx, dst, series, attempt, max(limit, boolInt(idempotent)*(maxAttempts-1)), body, pol) {
				p.log.Debug("retrying request", "dst", dst, "endpoint", ep.Addr, "attempt", attempt+1, "err", why)
				continue
			}
			if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				fail(http.StatusGatewayTimeout, grpcDeadlineExceeded, compat.RouteErrorRequestTimeout, fmt.Sprintf("request timeout after %v", timeout))
				return
			}
			p.log.Info("request failed", "direction", info.direction, "dst", dst, "endpoint", ep.Addr, "err", err)
			code := grpcUnavailable
			if status == http.StatusGatewayTimeout {
				code = grpcDeadlineExceeded
			}
			fail(status, code, errLabel, describe(actx, err, ep.Addr))
			return
		}
		grpcStatus := resp.Header.Get("Grpc-Status")
		if pol != nil && len(pol.GRPCCodes) > 0 && grpcStatus == "" && httproute.IsGRPCResponse(resp) {
			grpcStatus = peekTrailers(resp)
		}
		failed := resp.StatusCode >= 500 || (grpcStatus != "" && grpcStatus != "0")
		done(accrual == nil || !failed)
		if pol != nil && retryableResponse(pol, resp.StatusCode, grpcStatus) {
			if p.retryAgain(ctx, dst, series, attempt, limit, body, pol) {
				legacy.Response(resp.StatusCode, grpcStatus, false, time.Since(astart))
				series.BackendResponse(bl, resp.StatusCode, grpcStatus, "", time.Since(astart))
				io.Copy(io.Discard, io.LimitReader(resp.Body, maxReplayBody))
				resp.Body.Close()
				acancel()
				p.log.Debug("retrying failed response", "dst", dst, "status", resp.StatusCode, "grpc", grpcStatus, "attempt", attempt+1)
				continue
			}
		} else if attempt > 0 {
			series.Retry(metrics.RetrySuccess)
		}
		series.BackendResponse(bl, resp.StatusCode, grpcStatus, "", time.Since(astart))
		for _, mod := range slices.Concat(respMods, bRespMods) {
			httproute.ModifyHeaders(resp.Header, mod)
		}
		if idle := rule.Timeouts.Idle; idle > 0 {
			resp.Body = newIdleBody(resp.Body, idle, acancel)
		}
		out.status = resp.StatusCode
		func() {
			defer acancel()
			defer func() {
				out.grpc = resp.Trailer.Get("Grpc-Status")
				if out.grpc == "" {
					out.grpc = resp.Header.Get("Grpc-Status")
				}
			}()
			p.respond(w, r, resp, legacy, astart, false)
		}()
		return
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// retryAgain decides whether the failed attempt (0-based) is retried:
// retries left, the request's body replayable, the request not timed out,
// and the retry budget allowing it. It counts the outcome and waits the
// backoff.
func (p *Proxy) retryAgain(ctx context.Context, dst string, series *metrics.RouteSeries, attempt, limit int, body *replayBody, pol *route.Retry) bool {
	if ctx.Err() != nil {
		return false
	}
	if attempt >= limit {
		series.Retry(metrics.RetryLimitExceeded)
		return false
	}
	if body != nil && !body.replayable(bodyWait) {
		series.Retry(metrics.RetryOverflow)
		return false
	}
	if !p.budget.Withdraw() {
		series.Retry(metrics.RetryOverflow)
		return false
	}
	series.Retry(metrics.RetryRequest)
	p.metrics.Retry(compat.Outbound, dst)
	if pol != nil && pol.Backoff > 0 {
		d := min(pol.Backoff<<min(attempt, 20), maxRetryBackoff)
		d = time.Duration(float64(d) * (0.5 + rand.Float64()))
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// retryableResponse reports whether pol retries a response.
func retryableResponse(pol *route.Retry, status int, grpcStatus string) bool {
	if slices.Contains(pol.HTTPStatuses, uint16(status)) {
		return true
	}
	if grpcStatus == "" || len(pol.GRPCCodes) == 0 {
		return false
	}
	code, err := strconv.ParseUint(grpcStatus, 10, 32)
	return err == nil && slices.Contains(pol.GRPCCodes, uint32(code))
}

// peekTrailers waits briefly for a gRPC response to end, to learn its
// grpc-status trailer: a unary response ends right after its headers. The
// body read meanwhile is kept for the client; a response still streaming
// after peekWindow, or larger than maxReplayBody, is left to stream
// (status unknown: not retried).
func peekTrailers(resp *http.Response) string {
	pb := &peekBody{src: resp.Body, chunks: make(chan peekChunk), closed: make(chan struct{})}
	go pb.pump()
	timer := time.NewTimer(peekWindow)
	defer timer.Stop()
	size := 0
	for size <= maxReplayBody {
		select {
		case c := <-pb.chunks:
			pb.pending = append(pb.pending, c)
			size += len(c.data)
			if c.err != nil {
				resp.Body = pb
				if c.err == io.EOF {
					return resp.Trailer.Get("Grpc-Status")
				}
				return ""
			}
		case <-timer.C:
			resp.Body = pb
			return ""
		}
	}
	resp.Body = pb
	return ""
}

// peekWindow is how long peekTrailers waits for a response to end.
const peekWindow = 100 * time.Millisecond

type peekChunk struct {
	data []byte
	err  error
}

// peekBody reads a body in its own goroutine so that its start can be
// inspected with a deadline; reads return the chunks in order.
type peekBody struct {
	src       io.ReadCloser
	chunks    chan peekChunk
	closed    chan struct{}
	closeOnce sync.Once
	pending   []peekChunk
	cur       []byte
	err       error
}

func (b *peekBody) pump() {
	for {
		buf := make([]byte, 16<<10)
		n, err := b.src.Read(buf)
		select {
		case b.chunks <- peekChunk{buf[:n], err}:
		case <-b.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (b *peekBody) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		var c peekChunk
		if len(b.pending) > 0 {
			c, b.pending = b.pending[0], b.pending[1:]
		} else {
			select {
			case c = <-b.chunks:
			case <-b.closed:
				return 0, errors.New("read on a closed body")
			}
		}
		b.cur, b.err = c.data, c.err
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

func (b *peekBody) Close() error {
	b.closeOnce.Do(func() { close(b.closed) })
	return b.src.Close()
}

// shallow copies a request so that an attempt can get its own body.
func shallow(r *http.Request) *http.Request {
	c := *r
	return &c
}

// accrualPolicy turns the table's failure accrual into an ejection policy
// (nil: none configured).
func accrualPolicy(a *route.FailureAccrual) *balance.EjectionPolicy {
	if a == nil {
		return nil
	}
	p := balance.EjectionPolicy{ConsecutiveFailures: a.MaxFailures, MinBackoff: a.MinPenalty, MaxBackoff: a.MaxPenalty,
		JitterRatio: a.JitterRatio, FailFast: true}
	if p.ConsecutiveFailures <= 0 {
		p.ConsecutiveFailures = defaultAccrualFailures
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = defaultAccrualMin
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = defaultAccrualMax
	}
	p.MaxBackoff = max(p.MaxBackoff, p.MinBackoff)
	if p.JitterRatio <= 0 {
		p.JitterRatio = defaultAccrualJitter
	}
	p.JitterRatio = min(p.JitterRatio, 100)
	return &p
}

// routeLabels are the metric labels of a rule of tbl.
func routeLabels(tbl *route.Table, rule *httproute.Rule, grpcReq bool) metrics.RouteLabels {
	l := metrics.RouteLabels{ParentNamespace: tbl.Parent.Namespace, ParentName: tbl.Parent.Name,
		ParentPort: strconv.Itoa(int(tbl.Parent.Port))}
	switch rule.Kind {
	case httproute.KindDefault:
		l.GRPC = grpcReq
		l.RouteKind, l.RouteName = compat.RouteKindDefault, "http"
		if grpcReq {
			l.RouteName = "grpc"
		}
	default:
		l.GRPC = rule.Kind == httproute.KindGRPC
		l.RouteGroup, l.RouteKind, l.RouteNamespace, l.RouteName = rule.Meta.Group, rule.Meta.Kind, rule.Meta.Namespace, rule.Meta.Name
	}
	return l
}

// parentBackend labels the parent Service as a backend (requests forwarded
// to the parent itself).
func parentBackend(tbl *route.Table) metrics.BackendLabels {
	return metrics.BackendLabels{Namespace: tbl.Parent.Namespace, Name: tbl.Parent.Name, Port: strconv.Itoa(int(tbl.Parent.Port))}
}

// mirror sends fire-and-forget copies of r to each mirror's backend. body
// is nil for a bodiless request; a body not fully read (or too large) is
// not mirrored.
func (p *Proxy) mirror(r *http.Request, info *connInfo, mirrors []*route.Mirror, body *replayBody, series *metrics.RouteSeries) {
	for _, m := range mirrors {
		if m.Percent > 0 && m.Percent < 100 && rand.Float64()*100 >= m.Percent {
			continue
		}
		bl := metrics.BackendLabels{Namespace: m.Backend.Namespace, Name: m.Backend.Name, Port: strconv.Itoa(int(m.Backend.Port))}
		// A body the primary did not read to its end (or over 64 KiB) is
		// not copied: waiting for it would hold the primary's response.
		if body != nil && !body.complete() {
			series.Mirror(bl, true)
			continue
		}
		if p.routing.mirrors.Add(1) > maxMirrors {
			p.routing.mirrors.Add(-1)
			series.Mirror(bl, true)
			continue
		}
		series.Mirror(bl, false)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), mirrorTimeout)
		req := r.Clone(ctx)
		req.Body = http.NoBody
		authority := m.Backend.Authority
		go func() {
			defer p.routing.mirrors.Add(-1)
			defer cancel()
			if body != nil {
				req.Body = body.attempt()
			}
			d, err := p.resolver.Resolve(authority)
			if err != nil || d.Pool == nil {
				p.log.Debug("mirror backend unresolved", "authority", authority, "err", err)
				return
			}
			ep, err := d.Pool.Pick()
			if err != nil {
				return
			}
			done := ep.Begin()
			resp, err := p.roundTrip(ctx, req, ep, info, false, false)
			if err != nil {
				done(false)
				return
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			done(true)
		}()
	}
}

// gRPC status codes the proxy answers with.
const (
	grpcDeadlineExceeded = 4
	grpcUnavailable      = 14
)

// grpcProxyError answers a gRPC request with a trailers-only error.
func grpcProxyError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set(compat.HeaderProxyError, msg)
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}
