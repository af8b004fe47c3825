package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/detect"
	"github.com/weftmesh/weft/internal/metrics"
	"github.com/weftmesh/weft/internal/sockio"
	"github.com/weftmesh/weft/internal/tunnel"
)

// serveTCP forwards an opaque connection to one endpoint of its destination,
// copying both ways with half-close. When both sides are plain TCP the
// kernel splices the bytes (io.Copy between *net.TCPConn uses splice(2)).
func (p *Proxy) serveTCP(c net.Conn, info *connInfo) {
	if info.direction == compat.Inbound && !p.authorizeConn(c, info) {
		c.Close()
		return
	}
	p.trackOpaque(c, true)
	defer p.trackOpaque(c, false)
	defer c.Close()
	start := time.Now()
	src := p.metrics.TCP(info.target(info.dst), "src")
	target := info.target(info.dst)
	src.Open()

	d, err := p.resolver.Resolve(info.dst)
	var up net.Conn
	if err == nil {
		ep, perr := d.Pool.Pick()
		if err = perr; err == nil {
			done := ep.Begin()
			var serverID string
			up, serverID, err = p.connect(info, ep)
			done(err == nil)
			target = p.upstreamTarget(info, ep, serverID)
		}
	}
	if err != nil {
		p.log.Info("opaque connection failed", "direction", info.direction, "dst", info.dst, "err", err)
		src.Close(time.Since(start), 0, 0, errnoOf(err))
		return
	}
	p.trackOpaque(up, true)
	defer p.trackOpaque(up, false)
	defer up.Close()
	if info.direction == compat.Inbound {
		defer p.revokeOnPolicyChange(c, up, info)()
	}
	dst := p.metrics.TCP(target, "dst")
	dst.Open()
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("forwarding opaque TCP", "direction", info.direction, "dst", info.dst, "endpoint", target.Addr, "tls", target.TLS, "sni", info.sni)
	}

	toUp := make(chan copyResult, 1)
	go func() { toUp <- pipe(up, c) }()
	back := pipe(c, up)
	if back.err != nil {
		// The far side failed: unblock the other direction at once.
		c.Close()
		up.Close()
	}
	fwd := <-toUp
	dur := time.Since(start)
	src.Close(dur, fwd.n, back.n, errnoOf(firstErr(fwd.err, back.err)))
	dst.Close(dur, back.n, fwd.n, errnoOf(firstErr(back.err, fwd.err)))
}

// connect opens the upstream side of a TCP connection to ep and says which
// identity secured it ("" for plaintext). Outbound to a meshed endpoint it
// is mTLS: an opaque connection rides the opaque transport to the peer
// proxy's inbound port when discovery offers it; anything else goes to the
// endpoint's own port, where the peer's proxy detects mTLS — except on a
// port the peer treats as opaque without offering the transport, where its
// proxy would not detect TLS, so that one stays plaintext.
func (p *Proxy) connect(info *connInfo, ep *balance.Endpoint) (net.Conn, string, error) {
	ctx := context.Background()
	id := ep.Peer.Identity
	switch {
	case info.direction == compat.Inbound || p.id == nil || id == "":
		c, err := p.dial(context.WithValue(ctx, connKey{}, info), info.direction, ep.Addr)
		return c, "", err
	case info.opaque && ep.Peer.OpaquePort != 0:
		c, err := p.dialTunnel(ctx, info, ep)
		return c, id, err
	case ep.Peer.Opaque:
		c, err := p.dial(ctx, info.direction, ep.Addr)
		return c, "", err
	default:
		c, err := p.dial(withUpstream(ctx, info.direction, id, ""), info.direction, ep.Addr)
		return c, id, err
	}
}

// dialTunnel opens the opaque transport to ep's proxy: mTLS to its inbound
// port offering tunnel.ALPN, then the header naming ep's port.
func (p *Proxy) dialTunnel(ctx context.Context, info *connInfo, ep *balance.Endpoint) (net.Conn, error) {
	host, port, err := net.SplitHostPort(ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", ep.Addr, err)
	}
	h := tunnel.Header{Port: portOf(port), Name: info.dst}
	if h.Port == ep.Peer.OpaquePort {
		// Explicit mode: the endpoint is the peer proxy's inbound listener
		// itself, so the port the client dialed names the application's.
		h.Port = info.port
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(ep.Peer.OpaquePort)))
	tc, err := p.dialTLS(ctx, info.direction, addr, ep.Peer.Identity, tunnel.ALPN)
	if err != nil {
		return nil, err
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != tunnel.ALPN {
		tc.Close()
		return nil, fmt.Errorf("opaque transport to %s: the peer proxy did not accept %s (ALPN %q)", addr, tunnel.ALPN, got)
	}
	if err := tunnel.Write(tc, h); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

type copyResult struct {
	n   int64
	err error
}

// pipe copies src to dst until EOF, then half-closes dst's write side.
func pipe(dst, src net.Conn) copyResult {
	var n int64
	// Replay bytes read during protocol detection, then splice the rest:
	// io.Copy splices only when it sees *net.TCPConn on both sides, so the
	// destination is unwrapped too (a detection wrapper only adds reads).
	src, prefix := unwrapDetected(src)
	dst, _ = unwrapDetected(dst)
	if len(prefix) > 0 {
		m, err := dst.Write(prefix)
		n += int64(m)
		if err != nil {
			return copyResult{n, err}
		}
	}
	m, bulk, err := copyBulk(dst, src)
	if !bulk {
		m, err = io.Copy(dst, src)
	}
	n += m
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return copyResult{n, err}
}

// unwrapDetected returns the connection under a detection wrapper and the
// bytes it had buffered, so io.Copy sees a *net.TCPConn and can splice.
func unwrapDetected(c net.Conn) (net.Conn, []byte) {
	if dc, ok := c.(*detect.Conn); ok {
		return sockio.Unwrap(dc.Underlying()), dc.Peeked()
	}
	return sockio.Unwrap(c), nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// errnoOf names the errno of a failed connection for the errno label.
func errnoOf(err error) string {
	if err == nil {
		return ""
	}
	var se syscall.Errno
	if errors.As(err, &se) {
		switch se {
		case syscall.ECONNREFUSED:
			return "ECONNREFUSED"
		case syscall.ECONNRESET:
			return "ECONNRESET"
		case syscall.EPIPE:
			return "EPIPE"
		case syscall.ETIMEDOUT:
			return "ETIMEDOUT"
		case syscall.EHOSTUNREACH:
			return "EHOSTUNREACH"
		case syscall.ENETUNREACH:
			return "ENETUNREACH"
		}
		return "EIO"
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return "ETIMEDOUT"
	}
	return "EIO"
}

// dial connects to addr within the direction's connect timeout. When the
// context names the peer's identity (a meshed endpoint) the connection is
// mTLS, and the peer must prove that identity.
func (p *Proxy) dial(ctx context.Context, direction, addr string) (net.Conn, error) {
	if u := upstreamOf(ctx); u != nil && u.peerID != "" && p.id != nil {
		return p.dialTLS(ctx, direction, addr, u.peerID)
	}
	var c net.Conn
	var err error
	if direction == compat.Inbound {
		c, err = p.dialApp(ctx, addr)
	} else {
		d := net.Dialer{Timeout: p.connectTimeout(direction)}
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	return sockio.Wrap(c), nil
}

// dialTLS connects to addr and completes mTLS with a peer that must prove
// identity id.
func (p *Proxy) dialTLS(ctx context.Context, direction, addr, id string, alpn ...string) (*tls.Conn, error) {
	d := net.Dialer{Timeout: p.connectTimeout(direction)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := p.id.MeshClientConfig(id, addr, alpn...)
	if cfg == nil {
		c.Close()
		return nil, fmt.Errorf("mTLS to %s (expecting %s): this proxy has no certificate yet", addr, id)
	}
	tc := tls.Client(newRecConn(sockio.Wrap(c)), cfg)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("mTLS handshake with %s (expecting %s): %w", addr, id, err)
	}
	return tc, nil
}

func (p *Proxy) connectTimeout(direction string) time.Duration {
	if direction == compat.Inbound {
		return p.cfg.InboundConnectTimeout
	}
	return p.cfg.OutboundConnectTimeout
}

// upstream is what dialing an upstream connection needs.
type upstream struct {
	direction string // the traffic's direction (dial timeouts)
	peerID    string // the identity the endpoint must present (mTLS); "" for none
	dialAddr  string // the address to dial when the URL host is a pool name (identityPool)
}

// upstreamCtx carries an upstream in a context, in one allocation per
// request attempt (three context values and their boxed strings before:
// issue 17). h1Client takes the upstream as an argument, and makes one
// only to dial.
type upstreamCtx struct {
	context.Context
	upstream
}

type upstreamKey struct{}

func (c *upstreamCtx) Value(key any) any {
	if _, ok := key.(upstreamKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// withUpstream records in ctx the direction of a connection about to be
// dialed, the identity its endpoint must present ("" if it is not meshed)
// and the address to dial if not the URL's.
func withUpstream(ctx context.Context, direction, peerID, dialAddr string) context.Context {
	return &upstreamCtx{Context: ctx, upstream: upstream{direction: direction, peerID: peerID, dialAddr: dialAddr}}
}

// upstreamOf is ctx's upstreamCtx, or nil.
func upstreamOf(ctx context.Context) *upstreamCtx {
	u, _ := ctx.Value(upstreamKey{}).(*upstreamCtx)
	return u
}

// upstreamTarget is the metrics target of traffic to ep, secured by
// serverID ("" for plaintext). Inbound traffic keeps the accepted side's
// TLS labels; outbound traffic carries discovery's dst_* labels.
func (p *Proxy) upstreamTarget(info *connInfo, ep *balance.Endpoint, serverID string) metrics.Target {
	t := info.target(ep.Addr)
	if info.direction == compat.Inbound {
		return t
	}
	t.ClientID = ""
	t.Dst = metrics.DstOf(ep.Peer.Labels)
	switch {
	case p.id == nil:
		t.TLS, t.NoTLS = compat.TLSDisabled, ""
	case serverID != "":
		t.TLS, t.NoTLS, t.ServerID = compat.TLSTrue, "", serverID
	default:
		t.TLS, t.NoTLS = compat.TLSNoIdentity, compat.NoTLSNotProvidedByDiscovery
	}
	return t
}
