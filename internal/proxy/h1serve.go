package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The proxy's own HTTP/1.1 server loop (issue 17). net/http's server costs
// per request a context with cancel, an EAGAIN read (backgroundRead), its
// response/chunkWriter machinery and a header clone; on the proxy pairs of
// bench/ that was most of the user-space CPU left. serveH1 serves the
// common case itself: HTTP/1.1 keep-alive requests with a head that fits
// its read buffer, bodiless, Content-Length or chunked. Everything else
// (HTTP/1.0, Connection: close or upgrade, Upgrade, Expect, CONNECT, h2c
// prior knowledge, a malformed or oversized head, leading blank lines)
// goes to the net/http server of the direction on the same connection:
// the bytes read so far are replayed to it first (replayConn), so it sees
// the connection exactly as the client sent it and answers as it always
// did (400, 431, 417, 505, upgrades, 100-continue...).

// h1BufSize is the read and write buffer of a connection; a request head
// larger than the read buffer goes to net/http (which allows up to
// maxHeaderBytes).
const h1BufSize = 4 << 10

// h1WatchDelay is how long a request may run before the connection is
// watched for the client going away (which cancels the request). net/http
// watches from the start, one extra read per request; a request answered
// sooner does not need it.
const h1WatchDelay = 20 * time.Millisecond

// maxPostHandlerRead is how much of an unread request body is discarded
// to keep the connection (net/http's maxPostHandlerReadBytes).
const maxPostHandlerRead = 256 << 10

var (
	h1Readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, h1BufSize) }}
	h1Writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1BufSize) }}
)

// h1Conns tracks a direction's connections served by serveH1, for
// graceful shutdown.
type h1Conns struct {
	mu      sync.Mutex
	closing bool
	conns   map[*h1SrvConn]struct{}
}

// add registers c; false when the server is shutting down.
func (s *h1Conns) add(c *h1SrvConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = map[*h1SrvConn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *h1Conns) remove(c *h1SrvConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// shutdown stops keep-alive: idle connections are woken to close, busy
// ones close after their response (with Connection: close).
func (s *h1Conns) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.conns {
		if c.idle {
			c.conn.SetReadDeadline(aLongTimeAgo)
		}
	}
}

// close closes every connection (the grace period is over).
func (s *h1Conns) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.conns {
		c.conn.Close()
	}
}

func (s *h1Conns) keepAlive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closing
}

// setIdle marks c idle (waiting for a request); false when shutting down.
func (s *h1Conns) setIdle(c *h1SrvConn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.idle = idle
	return !s.closing
}

// h1SrvConn is one connection served by serveH1.
type h1SrvConn struct {
	p       *Proxy
	srv     *httpServer
	conn    *trackedConn
	cr      connReader
	br      *bufio.Reader
	bw      *bufio.Writer
	ctx     context.Context
	cancel  context.CancelFunc
	remote  string
	idle    bool // guarded by srv.h1.mu
	head    []byte
	tmpl    *http.Request // see template
	w       h1Writer
	rdl     time.Time // the read deadline in force (zero: none)
	readErr error     // why the head could not be read

	// The watch for a client going away while a request runs.
	timer     *time.Timer
	wmu       sync.Mutex
	wstate    int // watchOff, watchArmed, watchReading
	wdone     chan struct{}
	watchable atomic.Bool // the request body is done and nothing more is buffered
	gone      atomic.Bool // the watch saw the client close
}

const (
	watchOff = iota
	watchArmed
	watchReading
)

// connReader is what the bufio.Reader reads: the connection, after the
// byte the watch may have read.
type connReader struct {
	c       net.Conn
	hasByte bool
	b       [1]byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.hasByte && len(p) > 0 {
		p[0] = r.b[0]
		r.hasByte = false
		return 1, nil
	}
	return r.c.Read(p)
}

// serveH1 serves an HTTP/1 connection until it closes, or hands it to
// net/http.
func (p *Proxy) serveH1(srv *httpServer, tc *trackedConn) {
	c := &h1SrvConn{p: p, srv: srv, conn: tc, remote: tc.RemoteAddr().String()}
	if !srv.h1.add(c) {
		tc.Close()
		return
	}
	defer srv.h1.remove(c)
	c.cr.c = tc
	c.br = h1Readers.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = h1Writers.Get().(*bufio.Writer)
	c.bw.Reset(tc)
	sc := newSrvCtx(servedConnContext(tc))
	c.ctx, c.cancel = sc, sc.cancel
	handedOff := c.serve()
	c.cancel()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.br.Reset(nil)
	h1Readers.Put(c.br)
	c.bw.Reset(nil)
	h1Writers.Put(c.bw)
	if !handedOff {
		tc.Close()
	}
}

// serve runs the request loop; true when the connection went to net/http.
func (c *h1SrvConn) serve() bool {
	for {
		// The read deadline between requests is the idle timeout, renewed
		// only when a minute of it has passed: SetReadDeadline per request
		// was ~3 % of a proxy's CPU. It stays in force while a bodiless
		// request is served (the watch clears it before it reads); a
		// request with a body is read with none. It is set before the
		// connection is marked idle, so that shutdown's wake-up is never
		// overwritten.
		if c.br.Buffered() == 0 {
			if now := time.Now(); c.rdl.IsZero() || c.rdl.Sub(now) < h1IdleTimeoutServer-time.Minute {
				c.setReadDeadline(now.Add(h1IdleTimeoutServer))
			}
		}
		if !c.srv.h1.setIdle(c, true) {
			return false
		}
		first, err := c.br.Peek(1)
		if !c.srv.h1.setIdle(c, false) || err != nil {
			return false
		}
		if first[0] == '\r' || first[0] == '\n' {
			return c.handOff(-1)
		}
		buf, _ := c.br.Peek(c.br.Buffered())
		if headLen(buf) == 0 {
			// The head is still coming: bound it (slowloris).
			if t := c.p.cfg.HeaderReadTimeout; t > 0 {
				c.setReadDeadline(time.Now().Add(t))
			} else {
				c.setReadDeadline(time.Time{})
			}
		}
		n, ok := c.headEnd()
		if !ok && c.readErr != nil {
			return false // a slow, cut or failed head: closed, as net/http does
		}
		if !ok {
			return c.handOff(-1) // larger than the buffer
		}
		head, _ := c.br.Peek(n) // buffered: no read
		req, fast := parseRequestHead(head, c.template(), c.br)
		if fast {
			c.br.Discard(n)
		} else {
			c.head = append(c.head[:0], head...)
			before := c.br.Buffered()
			var err error
			req, err = http.ReadRequest(c.br)
			consumed := before - c.br.Buffered()
			if err != nil || !c.usual(req) {
				return c.handOff(consumed)
			}
		}
		if (req.Body != nil && req.Body != http.NoBody) || c.rdl.Before(time.Now().Add(h1IdleTimeoutServer/2)) {
			c.setReadDeadline(time.Time{})
		}
		if !c.serveRequest(req) {
			return false
		}
	}
}

// template is the request parseRequestHead copies: the connection's
// context and remote address.
func (c *h1SrvConn) template() *http.Request {
	if c.tmpl == nil {
		c.tmpl = (&http.Request{RemoteAddr: c.remote}).WithContext(c.ctx)
	}
	return c.tmpl
}

// setReadDeadline sets the connection's read deadline and records it.
func (c *h1SrvConn) setReadDeadline(t time.Time) {
	c.rdl = t
	c.conn.SetReadDeadline(t)
}

// h1IdleTimeoutServer closes a connection idle between requests (the
// http.Server's IdleTimeout).
const h1IdleTimeoutServer = 10 * time.Minute

// headEnd finds the end of the request head (after its first empty line),
// reading more as needed; false when it does not fit the buffer or the
// connection fails first.
func (c *h1SrvConn) headEnd() (int, bool) {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if n := headLen(buf); n > 0 {
			return n, true
		}
		if len(buf) >= c.br.Size() {
			return 0, false
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			c.readErr = err
			return 0, false
		}
	}
}

// headLen is the length of the head at the start of buf up to and
// including its first empty line ("\n" or "\r\n"); 0 if buf has none.
func headLen(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(buf) && buf[i] == '\n':
			return i + 1
		case i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n':
			return i + 2
		}
	}
}

// usual reports whether serveH1 serves req itself (see the file comment).
func (c *h1SrvConn) usual(req *http.Request) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Method == http.MethodConnect || req.Method == "PRI" || req.Close {
		return false
	}
	if len(req.Header["Expect"]) > 0 || len(req.Header["Upgrade"]) > 0 || headerHasToken(req.Header, "Connection", "upgrade") {
		return false
	}
	// http.ReadRequest has moved the Host header to req.Host (from the
	// header, the target being in origin form): net/http's server wants
	// exactly one, valid.
	if !strings.HasPrefix(req.RequestURI, "/") || hostFields(c.head) != 1 || !httpguts.ValidHostHeader(req.Host) {
		return false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// hostFields counts the Host fields of a request head.
func hostFields(head []byte) int {
	n := 0
	for i := 0; i < len(head); {
		j := bytes.IndexByte(head[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
		if len(head)-i >= 5 && (head[i]|0x20) == 'h' && (head[i+1]|0x20) == 'o' && (head[i+2]|0x20) == 's' && (head[i+3]|0x20) == 't' && head[i+4] == ':' {
			n++
		}
	}
	return n
}

// handOff gives the connection to net/http, replaying what was read:
// the first consumed bytes of the request head (consumed < 0: no head was
// parsed) and everything still buffered after them.
func (c *h1SrvConn) handOff(consumed int) bool {
	rest, _ := c.br.Peek(c.br.Buffered())
	var replay []byte
	if consumed > 0 && consumed <= len(c.head) {
		replay = append(replay, c.head[:consumed]...)
	}
	replay = append(replay, rest...)
	c.conn.SetReadDeadline(time.Time{})
	return c.srv.ln.push(&replayConn{trackedConn: c.conn, pending: replay})
}

// replayConn is a connection handed to net/http with the bytes serveH1
// had read from it in front.
type replayConn struct {
	*trackedConn
	pending []byte
}

func (r *replayConn) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(b, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.trackedConn.Read(b)
}

// serveRequest serves one request; false when the connection must close.
func (c *h1SrvConn) serveRequest(req *http.Request) (keep bool) {
	if req.Context() != c.ctx {
		req = req.WithContext(c.ctx)
		req.RemoteAddr = c.remote
	}
	var body *h1SrvBody
	c.watchable.Store(false)
	if req.Body != nil && req.Body != http.NoBody {
		body = &h1SrvBody{src: req.Body, c: c}
		req.Body = body
	} else if c.br.Buffered() == 0 {
		c.watchable.Store(true)
	}
	w := &c.w
	*w = h1Writer{c: c, req: req, body: body, cl: -1}
	c.arm()
	aborted := c.runHandler(w, req)
	c.disarm()
	if body != nil {
		body.stopReaders(c)
	}
	if aborted {
		if body != nil {
			body.end()
		}
		return false
	}
	w.finish()
	if err := c.bw.Flush(); err != nil {
		return false
	}
	return !w.closeAfter && !c.gone.Load() && c.ctx.Err() == nil
}

// runHandler calls the handler; true when it panicked (the connection
// then closes without completing the response, as net/http does).
func (c *h1SrvConn) runHandler(w *h1Writer, req *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			aborted = true
			if v != http.ErrAbortHandler {
				c.p.log.Error("panic serving HTTP/1 request", "direction", c.srv.direction, "peer", c.remote, "panic", v)
			}
		}
	}()
	c.srv.srv.Handler.ServeHTTP(w, req)
	return false
}

// arm starts the timer that watches the connection if the request runs
// longer than h1WatchDelay.
func (c *h1SrvConn) arm() {
	c.wmu.Lock()
	c.wstate = watchArmed
	if c.timer == nil {
		c.timer = time.AfterFunc(h1WatchDelay, c.watch)
	} else {
		c.timer.Reset(h1WatchDelay)
	}
	c.wmu.Unlock()
}

// watch reads from the connection while the handler runs: an EOF or an
// error means the client went away, which cancels the request.
func (c *h1SrvConn) watch() {
	c.wmu.Lock()
	if c.wstate != watchArmed {
		c.wmu.Unlock()
		return
	}
	if !c.watchable.Load() {
		c.timer.Reset(h1WatchDelay) // the body is still being read: later
		c.wmu.Unlock()
		return
	}
	// Cleared before the state says reading: disarm's wake-up deadline
	// comes after it. The serve loop waits for done before it reads c.rdl.
	c.setReadDeadline(time.Time{})
	c.wstate = watchReading
	done := make(chan struct{})
	c.wdone = done
	c.wmu.Unlock()
	n, err := c.conn.Read(c.cr.b[:])
	if n == 1 {
		c.cr.hasByte = true
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.gone.Store(true)
		c.cancel()
	}
	close(done)
}

// disarm stops the watch once the handler has returned.
func (c *h1SrvConn) disarm() {
	c.timer.Stop()
	c.wmu.Lock()
	st, done := c.wstate, c.wdone
	c.wstate, c.wdone = watchOff, nil
	c.wmu.Unlock()
	if st == watchReading {
		c.conn.SetReadDeadline(aLongTimeAgo)
		<-done
		c.setReadDeadline(time.Time{})
	}
}

// h1SrvBody is a request body: it records its end and, unlike the body
// http.ReadRequest returns, does not read the rest on Close (a large
// unread body closes the connection instead, as net/http's server does).
// The upstream client may read or close it from another goroutine (and
// after the handler has returned): mu serializes that with the serve
// loop, and end makes later reads fail before the next request is read.
type h1SrvBody struct {
	src    io.ReadCloser
	c      *h1SrvConn
	mu     sync.Mutex
	eof    bool
	closed bool
	// ending: the handler has returned; Read fails from then on (only
	// the serve loop reads the rest, under mu). broken: a Read was
	// interrupted then, and the connection cannot be reused.
	ending atomic.Bool
	broken bool
}

func (b *h1SrvBody) Read(p []byte) (int, error) {
	if b.ending.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ending.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

// stopReaders runs once the handler has returned (or aborted): the
// upstream client's request writer may still be reading the body (the
// response ended before the request did), possibly blocked on the
// client's socket, through the connection's pooled reader. Later Reads
// fail, and a Read in progress is woken by a past read deadline and
// waited for, so nothing reads through the connection's buffers once the
// serve loop reads the next request, or pools them.
func (b *h1SrvBody) stopReaders(c *h1SrvConn) {
	b.ending.Store(true)
	if !b.mu.TryLock() {
		c.conn.SetReadDeadline(aLongTimeAgo)
		b.mu.Lock()
		b.broken = true
	}
	b.mu.Unlock()
}

func (b *h1SrvBody) readLocked(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.src.Read(p)
	if err == io.EOF {
		b.eof = true
		if b.c.br.Buffered() == 0 {
			b.c.watchable.Store(true)
		}
	}
	return n, err
}

func (b *h1SrvBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// discard reads what is left of the body, up to maxPostHandlerRead. It
// reports whether the body was read to its end, and whether it had been
// closed unread.
func (b *h1SrvBody) discard() (done, closedEarly bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof {
		return true, false
	}
	if b.closed {
		return false, true
	}
	buf := make([]byte, 4<<10)
	for total := 0; total <= maxPostHandlerRead; {
		n, err := b.readLocked(buf)
		total += n
		if err == io.EOF {
			return true, false
		}
		if err != nil {
			return false, false
		}
	}
	return false, false
}

// end closes the body for good once the handler has returned; it reports
// whether the body had been read to its end.
func (b *h1SrvBody) end() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.eof
}
