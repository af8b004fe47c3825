package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/detect"
	"github.com/weftmesh/weft/internal/h2server"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/metrics"
	"github.com/weftmesh/weft/internal/sockio"
	"github.com/weftmesh/weft/internal/tunnel"
)

// connInfo is what the proxy knows about an accepted connection.
type connInfo struct {
	direction string
	// dst is the logical destination: a binding's name, the original
	// destination, or (inbound) the local address to forward to. Empty in
	// ingress mode, where each HTTP request names its own.
	dst      string
	port     uint16 // the port the client dialed
	tls      string // tls label of inbound traffic
	noTLS    string // no_tls_reason label
	clientID string // verified identity of an mTLS client
	sni      string // SNI of TLS originated by the application
	// opaque: the connection skipped detection (an opaque port), so toward
	// a meshed endpoint it rides the opaque transport (internal/tunnel).
	opaque bool
	// direct: an inbound connection dialed at the inbound listener itself
	// (forward mode, not redirected), which may be the opaque transport.
	direct bool
	// local is the address the client dialed (the pod's own IP), where
	// the app is tried when it refuses on loopback (appdial.go).
	local netip.Addr
	// peer is the client's IP, kept toward the app when configured
	// (clientaddr.go).
	peer netip.Addr
	// allow: the last allow counter of the connection's requests (authz.go).
	allow atomic.Pointer[allowCache]
	// forwarded: the client's X-Forwarded-For and Forwarded values
	// (forwarded.go).
	forwarded atomic.Pointer[forwardedFor]
}

// handle routes one accepted connection.
func (p *Proxy) handle(c net.Conn, k listenerKind) {
	info, ok := p.classify(c, k)
	if !ok {
		c.Close()
		return
	}
	c = sockio.Wrap(c)
	if info.dst != "" && p.skipDetection(info) {
		info.opaque = true
		p.serveTCP(c, info)
		return
	}
	if proto := p.declaredProtocol(info); proto != authz.ProtocolUnknown {
		p.serveDeclared(c, info, proto)
		return
	}
	res, dc, err := detect.Detect(c, p.cfg.DetectTimeout)
	if err != nil {
		p.log.Debug("connection closed before protocol detection", "direction", info.direction, "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if res.Protocol == detect.TLS && p.id != nil && info.direction == compat.Inbound && res.SNI == p.id.Identity() {
		p.serveMeshTLS(dc, info)
		return
	}
	if info.direction == compat.Inbound && info.dst == "" {
		p.log.Warn("inbound connection has no original destination (not redirected by iptables), no forward address, and is not the opaque transport; closing",
			"peer", c.RemoteAddr().String())
		dc.Close()
		return
	}
	p.route(dc, res, info)
}

// skipDetection reports whether a connection is opaque: its port is
// configured opaque, or (outbound) discovery says its destination is, by
// the profile's opaque_protocol or the endpoints' OPAQUE hint.
func (p *Proxy) skipDetection(info *connInfo) bool {
	if p.cfg.OpaquePorts[info.port] {
		return true
	}
	if info.direction != compat.Outbound || info.dst == "" {
		return false
	}
	d, err := p.resolver.Resolve(info.dst)
	return err == nil && d.Opaque()
}

// route sends a detected connection to the HTTP server or the TCP forwarder.
func (p *Proxy) route(dc *detect.Conn, res detect.Result, info *connInfo) {
	switch res.Protocol {
	case detect.HTTP1, detect.HTTP2:
		p.serveHTTPConn(dc, info, res.Protocol == detect.HTTP2)
	default:
		if res.Protocol == detect.TLS {
			info.sni = res.SNI
		}
		if res.TimedOut {
			p.log.Debug("protocol detection timed out; forwarding as opaque TCP", "direction", info.direction, "dst", info.dst)
		}
		if info.dst == "" {
			p.log.Info("ingress mode needs HTTP to route; closing opaque connection with no original destination", "peer", dc.RemoteAddr().String())
			dc.Close()
			return
		}
		p.serveTCP(dc, info)
	}
}

// classify works out where an accepted connection is going. It returns
// false (and logs why) when the connection cannot be routed.
func (p *Proxy) classify(c net.Conn, k listenerKind) (*connInfo, bool) {
	info := &connInfo{direction: k.direction, tls: compat.TLSDisabled}
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		info.peer = ra.AddrPort().Addr().Unmap()
	}
	if p.id != nil {
		info.tls, info.noTLS = compat.TLSNoIdentity, compat.NoTLSFromRemote
	}
	if k.binding != "" {
		info.dst = k.binding
		_, port, _ := net.SplitHostPort(k.binding)
		info.port = portOf(port)
		return info, true
	}
	orig, err := p.origDst(c)
	redirected := err == nil
	switch {
	case k.direction == compat.Inbound && p.cfg.InboundForward != "":
		info.dst = p.cfg.InboundForward
		info.port = orig.Port()
		info.direct = !redirected
		if _, port, err := net.SplitHostPort(p.cfg.InboundForward); err == nil && !redirected {
			info.port = portOf(port)
		}
	case k.direction == compat.Inbound && redirected:
		info.dst = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(orig.Port())))
		info.port = orig.Port()
		info.local = orig.Addr()
	case k.direction == compat.Outbound && redirected:
		info.dst = orig.String()
		info.port = orig.Port()
	case k.direction == compat.Outbound && p.cfg.IngressMode:
		info.port = orig.Port()
	case k.direction == compat.Inbound:
		// Dialed directly: only the opaque transport, whose header names
		// the port, can say where it goes (checked after detection).
	default:
		p.log.Warn("connection has no original destination (not redirected by iptables) and the listener has no explicit destination; closing",
			"direction", k.direction, "listener", k.self.String(), "peer", c.RemoteAddr().String())
		return nil, false
	}
	return info, true
}

// target is the metrics target of the accepted side.
func (info *connInfo) target(addr string) metrics.Target {
	return metrics.Target{Direction: info.direction, Addr: addr, TLS: info.tls, NoTLS: info.noTLS, ClientID: info.clientID}
}

// serveMeshTLS terminates mTLS from another Weft proxy, then routes the
// decrypted stream: an opaque transport connection to the port its header
// names, anything else like any other connection.
func (p *Proxy) serveMeshTLS(dc *detect.Conn, info *connInfo) {
	cfg := p.id.MeshServerConfig(meshServerALPN...)
	if cfg == nil {
		p.log.Info("inbound mTLS before this proxy has a certificate; closing", "peer", dc.RemoteAddr().String())
		dc.Close()
		return
	}
	tc := tls.Server(newRecConn(dc), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.log.Info("inbound mTLS handshake failed", "peer", dc.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	info.tls, info.noTLS = compat.TLSTrue, ""
	info.clientID = certify.PeerIdentity(tc.ConnectionState())
	if tc.ConnectionState().NegotiatedProtocol == tunnel.ALPN {
		p.serveTunnel(tc, info)
		return
	}
	if info.dst == "" {
		p.log.Warn("mTLS connection dialed directly (no original destination) without the opaque transport; closing", "client_id", info.clientID)
		tc.Close()
		return
	}
	if proto := p.declaredProtocol(info); proto != authz.ProtocolUnknown {
		p.serveAs(tc, info, proto)
		return
	}
	res, inner, err := detect.Detect(tc, p.cfg.DetectTimeout)
	if err != nil {
		tc.Close()
		return
	}
	p.route(inner, res, info)
}

// serveTunnel reads an opaque transport header and forwards the rest of
// the stream, undetected, to the application port it names.
func (p *Proxy) serveTunnel(tc *tls.Conn, info *connInfo) {
	tc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	h, err := tunnel.Read(tc)
	tc.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		p.log.Info("opaque transport: bad header; closing", "peer", tc.RemoteAddr().String(), "client_id", info.clientID, "err", err)
		tc.Close()
		return
	case p.ownPorts[h.Port]:
		p.log.Warn("opaque transport: refusing a connection to the proxy's own port", "port", h.Port, "client_id", info.clientID)
		tc.Close()
		return
	}
	info.port, info.opaque = h.Port, true
	info.dst = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(h.Port)))
	if la, ok := tc.LocalAddr().(*net.TCPAddr); ok {
		info.local = la.AddrPort().Addr()
	}
	if p.cfg.InboundForward != "" {
		// Everything goes to the forward address: its port, not the one
		// the client names, is the one policy decides on.
		info.dst = p.cfg.InboundForward
		if _, port, err := net.SplitHostPort(info.dst); err == nil {
			info.port = portOf(port)
		}
	}
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug("opaque transport", "client_id", info.clientID, "port", h.Port, "name", h.Name, "to", info.dst)
	}
	p.serveTCP(tc, info)
}

// meshServerALPN is what the inbound side offers other proxies: the opaque
// transport, h2, HTTP/1.1.
var meshServerALPN = []string{tunnel.ALPN, certify.ALPNTransport, "http/1.1"}

// handshakeTimeout bounds a TLS handshake.
const handshakeTimeout = 10 * time.Second

func portOf(s string) uint16 {
	n, _ := strconv.Atoi(s)
	return uint16(n)
}

// trackedConn counts bytes and records tcp_* metrics for a connection handed
// to the HTTP server.
type trackedConn struct {
	net.Conn
	// br buffers reads of an HTTP/2 connection: Go's HTTP/2 server reads
	// each frame's 9-byte header and then its payload straight from the
	// connection, two read syscalls a frame without it.
	br *bufio.Reader
	// wh holds an HTTP/2 response's HEADERS frame for its DATA (h2hold.go).
	wh      *h2WriteHold
	info    *connInfo
	series  *metrics.TCPSeries
	opened  time.Time
	read    atomic.Int64
	written atomic.Int64
	once    sync.Once
}

func (c *trackedConn) Read(b []byte) (n int, err error) {
	if c.br != nil {
		n, err = c.br.Read(b)
	} else {
		n, err = c.Conn.Read(b)
	}
	c.read.Add(int64(n))
	return n, err
}

func (c *trackedConn) Write(b []byte) (n int, err error) {
	if c.wh != nil {
		n, err = c.wh.Write(b)
	} else {
		n, err = c.Conn.Write(b)
	}
	c.written.Add(int64(n))
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.series.Close(time.Since(c.opened), c.read.Load(), c.written.Load(), "") })
	return err
}

// httpServer is the HTTP/1.1 + h2c server of one direction, fed by a channel
// listener with connections already detected as HTTP.
type httpServer struct {
	direction string
	srv       *http.Server
	ln        *chanListener
	h1        h1Conns          // connections served by the proxy's own HTTP/1 loop (h1serve.go)
	h2        *h2server.Server // HTTP/2 connections (unless Config.NetHTTP2Server)
}

func (p *Proxy) newHTTPServer(direction string) *httpServer {
	s := &httpServer{direction: direction, ln: newChanListener()}
	serve := p.serveOutbound
	if direction == compat.Inbound {
		serve = p.serveInbound
	}
	var handler http.Handler = http.HandlerFunc(serve)
	if p.tap != nil {
		handler = p.tapped(serve)
	}
	s.h2 = &h2server.Server{
		Handler:              grownStack(handler),
		MaxConcurrentStreams: h2MaxStreams,
		MaxHeaderBytes:       maxHeaderBytes,
		IdleTimeout:          10 * time.Minute,
		Log:                  p.log.With("direction", direction),
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Handler:           grownStack(handler),
		Protocols:         protos,
		ReadHeaderTimeout: p.cfg.HeaderReadTimeout,
		IdleTimeout:       10 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: h2MaxStreams},
		ErrorLog:          newStdLogger(p.log, direction),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*trackedConn); ok {
				return context.WithValue(ctx, connKey{}, tc.info)
			}
			if rc, ok := c.(*replayConn); ok {
				return context.WithValue(ctx, connKey{}, rc.info)
			}
			return ctx
		},
	}
	return s
}

// h2MaxStreams is how many requests an HTTP/2 connection to the proxy may
// have in flight at once.
const h2MaxStreams = 1000

// h2ReadBuffer is the read buffer of an HTTP/2 server connection: a few
// frames' worth, so that a burst of HEADERS and small DATA frames is read
// in one syscall.
const h2ReadBuffer = 8 << 10

// maxHeaderBytes bounds request heads; larger ones get 431.
const maxHeaderBytes = 64 << 10

type connKey struct{}

func connInfoFrom(ctx context.Context) *connInfo {
	info, _ := ctx.Value(connKey{}).(*connInfo)
	return info
}

// serveHTTPConn hands c to the HTTP server of its direction; h2 says the
// client spoke first the HTTP/2 preface (its reads are buffered then).
func (p *Proxy) serveHTTPConn(c net.Conn, info *connInfo, h2 bool) {
	tcp := p.metrics.TCP(info.target(info.dst), "src")
	tcp.Open()
	tc := &trackedConn{Conn: c, info: info, series: tcp, opened: time.Now()}
	srv := p.outbound
	if info.direction == compat.Inbound {
		srv = p.inbound
	}
	if h2 {
		// Writes gather per scheduling round (h2batch.go); reads are
		// buffered.
		bc := newBatchConn(c)
		tc.Conn = bc
		tc.br = bufio.NewReaderSize(c, h2ReadBuffer)
		if !p.cfg.NetHTTP2Server && p.hasH2Preface(tc) {
			p.serveH2(srv, tc)
			return
		}
		tc.wh = newH2WriteHold(bc)
	}
	if !h2 && !p.cfg.NetHTTP1Server {
		p.serveH1(srv, tc)
		return
	}
	if !srv.ln.push(tc) {
		tc.Close()
	}
}

// chanListener is a net.Listener whose connections are pushed by the proxy.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }
