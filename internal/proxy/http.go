package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/h2client"
	"github.com/weftmesh/weft/internal/metrics"
	"github.com/weftmesh/weft/internal/retry"
	reqtap "github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/target"
)

// The compat headers' keys in canonical form, for http.Header lookups
// that would canonicalize (allocate) on every request otherwise.
var (
	keyClientID    = http.CanonicalHeaderKey(compat.HeaderClientID)
	keyOrigProto   = http.CanonicalHeaderKey(compat.HeaderOrigProto)
	keyDstOverride = http.CanonicalHeaderKey(compat.HeaderDstOverride)
)

// maxAttempts bounds retries of one request (first try included).
const maxAttempts = 3

// HTTP/1 upstream connection pools (the h1 transport's and h1Client's).
const (
	h1IdleTimeout    = 60 * time.Second
	h1MaxIdlePerHost = 256
)

// newTransports makes the HTTP/1 transport and the HTTP/2 client, which
// dial alike.
func (p *Proxy) newTransports() (h1 *http.Transport, h2 *h2Client) {
	dialer := func(direction string) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, _, addr string) (net.Conn, error) { return p.dial(ctx, direction, addr) }
	}
	// One transport per protocol serves both directions; the dial timeout
	// is chosen from the request's direction carried in the context.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var dir string
		if u := upstreamOf(ctx); u != nil {
			dir = u.direction
			if u.dialAddr != "" {
				addr = u.dialAddr
			}
		}
		return dialer(dir)(ctx, network, addr)
	}
	h1 = &http.Transport{
		DialContext:            dial,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    h1MaxIdlePerHost,
		IdleConnTimeout:        h1IdleTimeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	// The frames of the connection's streams are written together
	// (h2batch.go).
	h2 = newH2Client(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return newBatchConn(c), nil
	}, h2client.Config{
		PingAfter:   10 * time.Second,
		PingTimeout: 5 * time.Second,
		IdleTimeout: 5 * time.Minute,
	})
	return h1, h2
}

// newH1Client is the direct HTTP/1 path beside the h1 transport, with the
// same dialer, idle timeout, pool size and response head limit.
func (p *Proxy) newH1Client() *h1Client {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var dir string
		if u := upstreamOf(ctx); u != nil {
			dir = u.direction
		}
		return p.dial(ctx, dir, addr)
	}
	return newH1Client(dial, h1IdleTimeout, h1MaxIdlePerHost, maxHeaderBytes)
}

func (p *Proxy) serveOutbound(w http.ResponseWriter, r *http.Request) {
	info := connInfoFrom(r.Context())
	if info == nil {
		info = &connInfo{direction: compat.Outbound, tls: compat.TLSDisabled}
	}
	w, r, o := p.observe(w, r, info)
	defer p.done(o)
	dst := info.dst
	if p.cfg.IngressMode {
		var err error
		if dst, err = ingressDestination(r, info.dst); err != nil {
			proxyError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if dst == "" {
		proxyError(w, http.StatusBadRequest, "no destination: the request names no authority")
		return
	}
	p.forward(w, r, info, dst)
}

func (p *Proxy) serveInbound(w http.ResponseWriter, r *http.Request) {
	info := connInfoFrom(r.Context())
	if info == nil {
		proxyError(w, http.StatusInternalServerError, "connection has no routing information")
		return
	}
	w, r, o := p.observe(w, r, info)
	defer p.done(o)
	if !p.authorizeRequest(w, r, info) {
		return
	}
	// h2c upgrades are not relayed: after the switch every request would
	// reach the application unchecked. The request goes on as HTTP/1.
	if headerHasToken(r.Header, "Upgrade", "h2c") {
		r.Header.Del("Upgrade")
		r.Header.Del("Http2-Settings")
		dropConnectionToken(r.Header, "upgrade")
	}
	// Only the proxy may assert a client's identity toward the
	// application; a client naming it hop-by-hop must not make the
	// verified value go either.
	dropConnectionToken(r.Header, compat.HeaderClientID)
	delete(r.Header, keyClientID)
	if info.clientID != "" {
		r.Header[keyClientID] = []string{info.clientID}
	}
	addForwardedFor(r, info)
	p.forward(w, r, info, info.dst)
}

// forward sends r to an endpoint of dst. Idempotent bodiless requests are
// retried on transport failures, and on failed responses when the route is
// retryable (a ServiceProfile's isRetryable), within the retry budget; the
// route's timeout bounds the whole request, retries included.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, info *connInfo, dst string) {
	if r.ProtoMajor == 2 && r.ContentLength == 0 && r.Trailer == nil {
		// Go's HTTP/2 server gives a request that ended with its HEADERS
		// (or declared a zero length) an empty body that is not
		// http.NoBody. Sent on as it is, the HTTP/2 client would write
		// HEADERS, then an empty DATA frame with END_STREAM, flushing
		// each; and the request would not count as bodiless for retries.
		r.Body = http.NoBody
	}
	d, err := p.resolver.Resolve(dst)
	if err != nil {
		proxyError(w, http.StatusServiceUnavailable, fmt.Sprintf("resolving %s: %v", dst, err))
		return
	}
	upgrade := r.ProtoMajor == 1 && headerHasToken(r.Header, "Connection", "upgrade")
	downgrade := false
	if info.direction == compat.Inbound {
		if op := r.Header.Get(keyOrigProto); op != "" {
			delete(r.Header, keyOrigProto)
			downgrade = strings.HasPrefix(op, "HTTP/1")
		}
	}
	removeHopByHop(r.Header, upgrade)
	if _, ok := r.Header["User-Agent"]; !ok {
		r.Header["User-Agent"] = []string{""} // don't let the transport add its own
	}
	if info.direction == compat.Outbound && !upgrade {
		if tbl := d.Routes.Load(); tbl != nil {
			p.forwardRoutes(w, r, info, dst, d, tbl)
			return
		}
	}
	bodiless := r.Body == nil || r.Body == http.NoBody
	retryable := !upgrade && retry.Idempotent(r.Method) && bodiless
	var route target.Route
	routed := false
	if info.direction == compat.Outbound {
		route, routed = d.Profile.Route(r.Method, r.URL.Path)
	}
	retryFailures := routed && route.Retryable && !upgrade && bodiless
	p.budget.Deposit()
	ctx := r.Context()
	timeout := p.cfg.ResponseTimeout
	if routed && route.Timeout > 0 {
		timeout = route.Timeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for attempt := 1; ; attempt++ {
		ep, err := d.Pool.Pick()
		if err != nil {
			proxyError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s has no endpoints", dst))
			return
		}
		mt := p.upstreamTarget(info, ep, p.peerID(info, ep))
		p.spanOf(ctx).Peer(ep.Addr, mt.ServerID)
		mt.Authority = r.Host
		series := p.metrics.HTTP(mt)
		series.Request()
		start := time.Now()
		began := ep.Start()
		resp, err := p.roundTrip(ctx, r, ep, info, upgrade, downgrade)
		if err != nil {
			ep.End(began, false)
			status := errorStatus(ctx, err)
			series.Response(status, "", false, time.Since(start))
			if (retryable || retryFailures) && attempt < maxAttempts && ctx.Err() == nil && p.budget.Withdraw() {
				p.log.Debug("retrying request", "dst", dst, "endpoint", ep.Addr, "attempt", attempt, "err", err)
				p.metrics.Retry(info.direction, dst)
				continue
			}
			p.log.Info("request failed", "direction", info.direction, "dst", dst, "endpoint", ep.Addr, "err", err)
			proxyError(w, status, describe(ctx, err, ep.Addr))
			return
		}
		ep.End(began, true)
		if retryFailures && attempt < maxAttempts && route.Failed(resp.StatusCode) && ctx.Err() == nil && p.budget.Withdraw() {
			// The failed attempt counts as a response of its endpoint; the
			// client sees only the last one.
			series.Response(resp.StatusCode, resp.Header.Get("Grpc-Status"), false, time.Since(start))
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			p.log.Debug("retrying failed response", "dst", dst, "route", route.Name, "status", resp.StatusCode, "attempt", attempt)
			p.metrics.Retry(info.direction, dst)
			continue
		}
		p.respond(w, r, resp, series, start, upgrade)
		return
	}
}

// peerID is the identity that secures an HTTP request to ep: outbound to
// a meshed endpoint the transport dials mTLS (withUpstream).
func (p *Proxy) peerID(info *connInfo, ep *balance.Endpoint) string {
	if info.direction == compat.Outbound && p.id != nil {
		return ep.Peer.Identity
	}
	return ""
}

func (p *Proxy) roundTrip(ctx context.Context, r *http.Request, ep *balance.Endpoint, info *connInfo, upgrade, downgrade bool) (*http.Response, error) {
	if p.tap != nil && info.direction == compat.Outbound && p.tap.Active() {
		reqtap.Endpoint(ctx, ep.Addr, p.peerID(info, ep))
	}
	id, dialAddr := ep.Peer.Identity, ""
	if id != "" && p.id != nil {
		// Set here rather than in identityPool: one copy of the request.
		dialAddr = ep.Addr
	}
	up := upstream{direction: info.direction, peerID: id, dialAddr: dialAddr}
	// The copy of the request and its URL in one allocation; it takes ctx
	// with WithContext below only for the Transport: h1Client and the
	// HTTP/2 pool take ctx apart.
	o := new(struct {
		req http.Request
		url url.URL
	})
	o.req, o.url = *r, url.URL{Scheme: "http", Host: p.appPoolKey(info, ep.Addr), Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out := &o.req
	out.URL = &o.url
	if out.Host == "" {
		out.Host = ep.Addr
	}
	out.RequestURI = ""
	out.Close = false
	if out.Body == http.NoBody {
		out.Body = nil
	}
	// HTTP/1 stays HTTP/1 to a meshed peer, plaintext or mTLS, on pooled
	// connections (h1Client): measured in bench/, Go's HTTP/2 between the
	// proxies cost ~1.3x the CPU per request and ~0.7x the throughput
	// (issue 17). Over mTLS each pooled connection is one handshake, made
	// with the peer's identity verified (dial, withUpstream), and reused like a
	// plaintext one: the pair makes as many as requests are in flight at
	// once, not one per request (bench/results/issue17.md, mtlsh1-17).
	// HTTP/2 and gRPC keep HTTP/2. Expect: 100-continue, which h1Client
	// does not take, still rides HTTP/2 to an mTLS peer (l5d-orig-proto).
	// Requests to an mTLS peer through a Transport get a pool per (address,
	// identity) (identityPool). An inbound request that arrives with
	// l5d-orig-proto goes out as HTTP/1.
	h2 := false
	switch {
	case upgrade || downgrade:
	case r.ProtoMajor == 2:
		h2 = true
	case info.direction == compat.Outbound && ep.Peer.Meshed && p.peerID(info, ep) != "" && (p.h1d == nil || !h1Usable(out)):
		h2 = true
		out.Header = r.Header.Clone()
		out.Header[keyOrigProto] = []string{"HTTP/1.1"}
	}
	if !h2 && !upgrade && p.h1d != nil && h1Usable(out) {
		return p.h1d.roundTrip(ctx, out, up)
	}
	if id != "" && p.id != nil {
		out.URL.Host = identityPool(ep.Addr, id)
	}
	if h2 {
		// Like h1Client, the HTTP/2 pool takes ctx and up apart: no
		// second copy of the request to carry them.
		return p.h2.roundTrip(ctx, out, up)
	}
	return p.h1.RoundTrip(out.WithContext(&upstreamCtx{Context: ctx, upstream: up}))
}

// identityPool is the URL host that gives requests to an mTLS peer a
// Transport connection pool of their own per (address, identity), as
// h1Client keys its pools: a Transport pools by URL host alone, so a
// connection verified as one identity would otherwise carry a request that
// expects another at the same address (a pod IP reused, discovery
// changed). The host is a name that is never resolved: dial connects to
// the address carried in the context (upstreamCtx.dialAddr). Names are cached: a
// hash per request cost a few percent of the proxy's CPU (issue 17).
func identityPool(addr, id string) string {
	k := poolKey{addr, id}
	if h, ok := poolHosts.Load(k); ok {
		return h.(string)
	}
	sum := sha256.Sum256([]byte(addr + "\x00" + id))
	h := "id-" + hex.EncodeToString(sum[:16]) + ".weft.invalid:1"
	if poolHostCount.Add(1) > maxPoolHosts {
		poolHosts.Clear()
		poolHostCount.Store(1)
	}
	poolHosts.Store(k, h)
	return h
}

type poolKey struct{ addr, id string }

// poolHosts caches identityPool's names, at most maxPoolHosts of them
// (cleared when full: endpoints come and go).
var (
	poolHosts     sync.Map
	poolHostCount atomic.Int64
)

const maxPoolHosts = 4096

// Response bodies are copied through a pooled buffer: 32 KiB, or 4 KiB
// for a body known to fit in it (most API responses). Each response in
// flight holds one, and every garbage collection empties the pools, which
// then allocate afresh: with 1 KiB responses the 32 KiB buffers were 8.5 %
// of the bytes the inbound proxy of the h2 mTLS pair allocated (issue 17).
var (
	copyBufs      = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	smallCopyBufs = sync.Pool{New: func() any { b := make([]byte, smallCopy); return &b }}
)

// smallCopy is the largest known body length copied through a
// smallCopyBufs buffer.
const smallCopy = 4 << 10

// respond relays the upstream response, streaming its body and trailers.
func (p *Proxy) respond(w http.ResponseWriter, r *http.Request, resp *http.Response, series *metrics.HTTPSeries, start time.Time, upgrade bool) {
	headerLatency := time.Since(start)
	defer resp.Body.Close()
	if upgrade && resp.StatusCode == http.StatusSwitchingProtocols {
		series.Response(resp.StatusCode, "", true, headerLatency)
		p.relayUpgrade(w, resp)
		return
	}
	removeHopByHop(resp.Header, false)
	h := resp.Header
	if a, ok := w.(headerAdopter); !ok || h == nil || !a.AdoptHeader(h) {
		h = w.Header()
		for k, v := range resp.Header {
			h[k] = v
		}
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // no sniffing: pass the response through as it is
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = nil
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	bodyErr := copyBody(w, resp.Body, resp.ContentLength < 0 || r.ProtoMajor == 2, resp.ContentLength)
	for k, v := range resp.Trailer {
		h[http.TrailerPrefix+k] = v
	}
	grpc := resp.Trailer.Get("Grpc-Status")
	if grpc == "" {
		grpc = resp.Header.Get("Grpc-Status")
	}
	success := resp.StatusCode < 500 && (grpc == "" || grpc == "0") && bodyErr == nil
	series.Response(resp.StatusCode, grpc, success, headerLatency)
	if bodyErr != nil {
		// Abort the client's stream so it sees a failure, not a short body.
		p.log.Debug("response body copy failed", "err", bodyErr)
		panic(http.ErrAbortHandler)
	}
}

// headerAdopter is a ResponseWriter that can take a proxied response's
// header as its own (h1Writer, h2server's writer).
type headerAdopter interface{ AdoptHeader(http.Header) bool }

// copyBody copies a response body, flushing after each chunk when the body is
// streamed (unknown length or HTTP/2) so that streaming RPCs stay live. The
// chunk that completes a known length (length >= 0) is not flushed: the
// handler returns once the body ends, and the server then writes what is
// buffered with the end of the response, in one write (on HTTP/2 the data
// and END_STREAM in one DATA frame, instead of a flushed DATA frame and
// an empty one: a frame and a syscall less per response on each hop). If
// the upstream's stream has not ended 1 ms after that chunk (an HTTP/2
// upstream that holds END_STREAM, e.g. for late trailers), it is flushed
// then, so a client never waits on the upstream for bytes the proxy holds.
// Likewise the headers, if the body's first chunk is 1 ms late.
func copyBody(w http.ResponseWriter, body io.Reader, flush bool, length int64) error {
	pool := &copyBufs
	if length >= 0 && length <= smallCopy {
		pool = &smallCopyBufs
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	var rc *http.ResponseController // made when first needed
	var late *lateFlush
	var written int64
	var result error
	// The response's headers wait in the server's buffer for the first
	// chunk of the body (one write for both). An upstream that sends its
	// headers and then holds the body (a gRPC server stream before its
	// first message, a long poll) must not hold them from the client:
	// they are flushed if no body has come within lateFlushDelay.
	var first *lateFlush
	if body != http.NoBody && !bodyReady(body, length) {
		first = armLateFlush(w)
	}
	for {
		n, err := body.Read(buf)
		if first != nil {
			first.stop()
			first = nil
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				break // the client went away; nothing to report upstream
			}
			written += int64(n)
			switch {
			case !flush:
			case length < 0 || written < length:
				if rc == nil {
					rc = http.NewResponseController(w)
				}
				rc.Flush()
			case err == nil && late == nil:
				// The length is complete but the stream has not ended
				// (an HTTP/2 upstream's END_STREAM comes with a later
				// Read): flush unless the end follows promptly.
				late = armLateFlush(w)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			result = err
			break
		}
	}
	if late != nil {
		late.stop()
	}
	return result
}

// bodyReady reports whether body's first Read returns at once: a body of
// known length whose first bytes have already been read from the socket
// (an HTTP/1 upstream usually sends head and body together). Then
// copyBody arms no timer for it: one timer fewer per response (issue 17).
func bodyReady(body io.Reader, length int64) bool {
	b, ok := body.(interface{ Buffered() int })
	return ok && length > 0 && b.Buffered() > 0
}

// lateFlush flushes a response if its upstream keeps the proxy waiting
// longer than lateFlushDelay: for the body's first chunk after the headers,
// or for the end of a stream whose known length is complete (copyBody).
// Pooled with its timer: made per response, a timer, a closure and its
// captured state were a handful of allocations on every HTTP/2 response
// (issue 17).
type lateFlush struct {
	mu sync.Mutex
	w  http.ResponseWriter // nil once copyBody has stopped waiting
	t  *time.Timer
}

// lateFlushDelay is how long copyBody waits for an upstream before it
// flushes what the client has not been sent.
const lateFlushDelay = time.Millisecond

var lateFlushes = sync.Pool{New: func() any {
	l := &lateFlush{}
	l.t = time.AfterFunc(time.Hour, l.fire)
	l.t.Stop()
	return l
}}

func armLateFlush(w http.ResponseWriter) *lateFlush {
	l := lateFlushes.Get().(*lateFlush)
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
	l.t.Reset(lateFlushDelay)
	return l
}

func (l *lateFlush) fire() {
	l.mu.Lock()
	if l.w != nil {
		http.NewResponseController(l.w).Flush()
	}
	l.mu.Unlock()
}

// stop ends l's use once the body has ended. A lateFlush whose timer has
// fired is not reused: its fire may still be waiting for the lock.
func (l *lateFlush) stop() {
	stopped := l.t.Stop()
	l.mu.Lock()
	l.w = nil
	l.mu.Unlock()
	if stopped {
		lateFlushes.Put(l)
	}
}

// relayUpgrade completes a protocol switch (e.g. WebSocket) by splicing the
// client's connection to the upstream's.
func (p *Proxy) relayUpgrade(w http.ResponseWriter, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		proxyError(w, http.StatusBadGateway, "upstream switched protocols without a usable connection")
		return
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		proxyError(w, http.StatusInternalServerError, "cannot take over the connection for an upgrade: "+err.Error())
		return
	}
	defer conn.Close()
	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(up, brw) // drains anything buffered, then the connection
		errc <- err
	}()
	go func() {
		_, err := io.Copy(conn, up)
		errc <- err
	}()
	<-errc
}

// hopByHop headers are meaningful for one connection only (RFC 9110 §7.6.1).
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header, upgrade bool) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" && !(upgrade && strings.EqualFold(name, "Upgrade")) {
				h.Del(name)
			}
		}
	}
	te := headerHasToken(h, "Te", "trailers")
	for _, k := range hopByHop {
		if upgrade && (k == "Connection" || k == "Upgrade") {
			continue
		}
		delete(h, k) // the names are canonical: no CanonicalHeaderKey per name
	}
	if te {
		h.Set("Te", "trailers") // gRPC needs it end to end
	}
}

// dropConnectionToken removes token from the Connection header's list
// (and the header when nothing is left).
func dropConnectionToken(h http.Header, token string) {
	var kept []string
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, token) {
				kept = append(kept, t)
			}
		}
	}
	if len(kept) == 0 {
		h.Del("Connection")
		return
	}
	h.Set("Connection", strings.Join(kept, ", "))
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func errorStatus(ctx context.Context, err error) int {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func describe(ctx context.Context, err error, addr string) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "response timeout from " + addr
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Sprintf("connection to %s failed: %v", addr, oe.Err)
	}
	return fmt.Sprintf("request to %s failed: %v", addr, err)
}

// proxyError answers with a proxy-generated error, named in l5d-proxy-error.
func proxyError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set(compat.HeaderProxyError, msg)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// newStdLogger routes net/http's internal errors into slog at debug level
// (they are per-connection noise such as TLS handshake or parse failures).
func newStdLogger(l *slog.Logger, direction string) *log.Logger {
	return slog.NewLogLogger(l.With("direction", direction).Handler(), slog.LevelDebug)
}
