package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

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
	target := metrics.Target{Direction: info.direction, Addr: info.dst, TLS: info.tls}
	src := p.metrics.TCP(target, "src")
	src.Open()

	pool, err := p.resolver.Resolve(info.dst)
	var up net.Conn
	var done func(bool)
	if err == nil {
		ep, perr := pool.Pick()
		if err = perr; err == nil {
			done = ep.Begin()
			target.Addr = ep.Addr
			up, err = p.dial(context.Background(), info.direction, ep.Addr)
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

// dial connects to addr within the direction's connect timeout.
func (p *Proxy) dial(ctx context.Context, direction, addr string) (net.Conn, error) {
	timeout := p.cfg.OutboundConnectTimeout
	if direction == compat.Inbound {
		timeout = p.cfg.InboundConnectTimeout
	}
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", addr)
}
