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
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/detect"
	"github.com/weftmesh/weft/internal/metrics"
)

// serveTCP forwards an opaque connection to one endpoint of its destination,
// copying both ways with half-close. When both sides are plain TCP the
// kernel splices the bytes (io.Copy between *net.TCPConn uses splice(2)).
func (p *Proxy) serveTCP(c net.Conn, info *connInfo) {
	p.trackOpaque(c, true)
	defer p.trackOpaque(c, false)
	defer c.Close()
	start := time.Now()
	src := p.metrics.TCP(info.target(info.dst), "src")
	target := info.target(info.dst)
	src.Open()

	pool, err := p.resolver.Resolve(info.dst)
	var up net.Conn
	var done func(bool)
	if err == nil {
		ep, perr := pool.Pick()
		if err = perr; err == nil {
			done = ep.Begin()
			target = p.upstreamTarget(info, ep)
			up, err = p.dial(withPeer(context.Background(), ep), info.direction, ep.Addr)
			done(err == nil)
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
	dst := p.metrics.TCP(target, "dst")
	dst.Open()
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("forwarding opaque TCP", "direction", info.direction, "dst", info.dst, "endpoint", target.Addr, "sni", info.sni)
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
	d := time.Since(start)
	src.Close(d, fwd.n, back.n, errnoOf(firstErr(fwd.err, back.err)))
	dst.Close(d, back.n, fwd.n, errnoOf(firstErr(back.err, fwd.err)))
}

type copyResult struct {
	n   int64
	err error
}

// pipe copies src to dst until EOF, then half-closes dst's write side.
func pipe(dst, src net.Conn) copyResult {
	var n int64
	// Replay bytes read during protocol detection, then splice the rest.
	src, prefix := unwrapDetected(src)
	if len(prefix) > 0 {
		m, err := dst.Write(prefix)
		n += int64(m)
		if err != nil {
			return copyResult{n, err}
		}
	}
	m, err := io.Copy(dst, src)
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
		return dc.Underlying(), dc.Peeked()
	}
	return c, nil
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
	timeout := p.cfg.OutboundConnectTimeout
	if direction == compat.Inbound {
		timeout = p.cfg.InboundConnectTimeout
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	id, _ := ctx.Value(peerIDKey{}).(string)
	if id == "" || p.id == nil {
		return c, nil
	}
	tc := tls.Client(c, p.id.ClientConfig(id))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("mTLS handshake with %s (expecting %s): %w", addr, id, err)
	}
	return tc, nil
}

type peerIDKey struct{}

// withPeer records in ctx the identity ep must present, if it is meshed.
func withPeer(ctx context.Context, ep *balance.Endpoint) context.Context {
	if id := ep.Meta[metaIdentity]; id != "" {
		return context.WithValue(ctx, peerIDKey{}, id)
	}
	return ctx
}

// upstreamTarget is the metrics target of traffic to ep. Inbound traffic
// keeps the accepted side's TLS labels.
func (p *Proxy) upstreamTarget(info *connInfo, ep *balance.Endpoint) metrics.Target {
	t := info.target(ep.Addr)
	if info.direction == compat.Inbound {
		return t
	}
	t.ClientID = ""
	switch id := ep.Meta[metaIdentity]; {
	case p.id == nil:
		t.TLS, t.NoTLS = compat.TLSDisabled, ""
	case id != "":
		t.TLS, t.NoTLS, t.ServerID = compat.TLSTrue, "", id
	default:
		t.TLS, t.NoTLS = compat.TLSNoIdentity, compat.NoTLSNotProvidedByDiscovery
	}
	return t
}
