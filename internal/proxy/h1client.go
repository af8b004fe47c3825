package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/sockio"
)

// h1Client sends HTTP/1.1 requests on pooled connections from the calling
// goroutine: it writes the request, reads the response head and hands the
// body back, with no per-connection read and write goroutines (a request
// body is written by a goroutine of its own while the response is read).
// net/http.Transport's two loops and the handoffs between them cost ~15 %
// of a proxy's CPU at max rate (issue 17). Upgrades and Expect:
// 100-continue stay on the Transport (h1Usable).
type h1Client struct {
	dial        func(ctx context.Context, addr string) (net.Conn, error)
	idleTimeout time.Duration
	maxIdle     int // per key
	maxHeader   int64

	mu    sync.Mutex
	idle  map[string][]*h1Conn // per pool key, most recently used last
	sweep *time.Timer          // pending sweep of expired idle connections
}

// h1Conn is one pooled upstream connection.
type h1Conn struct {
	c      net.Conn
	lr     *headerLimit
	br     *bufio.Reader
	bw     *bufio.Writer // writes to the h1Conn itself (Write)
	key    string
	reused bool
	since  time.Time // idle since

	// The socket under c, when it is one (plaintext, or under mTLS's rec),
	// for a bodiless request's last write (flushAwait) and peerClosed.
	sock    *sockio.Conn
	rec     *recConn // c's, when c is a *tls.Conn
	held    []byte   // rec's cork buffer, kept for the next request
	awaitUp bool     // the next Write is a request's last: sock.WriteAwait
	// unchecked: reused without peerClosed's look at the socket, left to
	// the request's last write (WriteAwait); a head over pc.bw's 4 KiB
	// looks before its first write instead.
	unchecked bool
	// interrupt wakes the connection's blocked reads and writes (a
	// request's context ended): made once, not per request.
	interrupt func()
}

func newH1Conn(c net.Conn, key string) *h1Conn {
	lr := &headerLimit{c: c, n: -1}
	pc := &h1Conn{c: c, lr: lr, br: bufio.NewReaderSize(lr, 4<<10), key: key}
	pc.bw = bufio.NewWriterSize(pc, 4<<10)
	pc.interrupt = func() { c.SetDeadline(aLongTimeAgo) }
	switch c := c.(type) {
	case *sockio.Conn:
		pc.sock = c
	case *tls.Conn:
		// Corked, a handshake's writes would wait for its own reads.
		if rc := recConnOf(c); rc != nil && c.ConnectionState().HandshakeComplete {
			pc.rec = rc
			pc.sock, _ = rc.Conn.(*sockio.Conn)
		}
	}
	return pc
}

// Write is pc.bw's: to the connection.
func (pc *h1Conn) Write(p []byte) (int, error) {
	if pc.unchecked {
		pc.unchecked = false
		if !pc.awaitUp && sockClosed(pc.sock) {
			return 0, errStale
		}
	}
	if pc.awaitUp {
		pc.awaitUp = false
		n, pending, err := pc.sock.WriteAwait(p)
		if !pending {
			return n, err
		}
		if pc.reused {
			return 0, errStale
		}
	}
	return pc.c.Write(p)
}

// sockClosed: s has something to read (a byte, EOF or an error), which
// on an idle pooled connection means closed or unusable.
func sockClosed(s *sockio.Conn) bool {
	var b [1]byte
	_, errno, err := s.Peek(b[:])
	return err != nil || errno != syscall.EAGAIN
}

// errStale: a pooled connection had something to read (a close, bytes
// nobody asked for) when a request was about to go out on it; nothing
// was sent (the request goes on another connection, whatever its method).
var errStale = errors.New("pooled connection closed by its server (or sent bytes unasked)")

// staleErr is what flushAwait fails with when the socket has something
// to read already: on a pooled connection errStale (nothing is sent, and
// the request goes on another); on a new one nil (the request goes out
// and the answer, early as it is, is read).
func (pc *h1Conn) staleErr() error {
	if pc.reused {
		return errStale
	}
	return nil
}

// flushAwait writes out the request in pc.bw and, when it went out whole,
// waits until the answer starts to arrive without first trying a read
// that would find nothing (sockio.Conn.WriteAwait): one syscall fewer per
// request. Only for a request without a body, whose response is read
// next. WriteAwait first looks at the socket for a close or stray bytes,
// which on a pooled connection is the check before reuse (peerClosed
// leaves it to WriteAwait then): errStale, nothing sent. Under mTLS the
// records of the request are gathered (cork) and go out in that one
// write.
func (pc *h1Conn) flushAwait() error {
	switch {
	case pc.sock == nil:
		return pc.bw.Flush()
	case pc.rec != nil:
		pc.rec.cork(pc.held)
		pc.unchecked = false // WriteAwait looks, after the cork
		err := pc.bw.Flush()
		held, uerr := pc.rec.uncorkAwait(err == nil, pc.staleErr())
		pc.held = held
		if err != nil {
			return err
		}
		return uerr
	}
	pc.awaitUp = pc.bw.Buffered() > 0
	err := pc.bw.Flush()
	pc.awaitUp = false
	return err
}

// headerLimit bounds what a response head may read from the connection;
// n < 0 is unlimited (the body).
type headerLimit struct {
	c net.Conn
	n int64
}

var errHeaderTooLong = errors.New("response headers too long")

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errHeaderTooLong
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

func newH1Client(dial func(ctx context.Context, addr string) (net.Conn, error), idleTimeout time.Duration, maxIdle int, maxHeader int64) *h1Client {
	return &h1Client{dial: dial, idleTimeout: idleTimeout, maxIdle: maxIdle, maxHeader: maxHeader, idle: map[string][]*h1Conn{}}
}

// h1Usable reports whether req can take the direct path: anything but
// Expect: 100-continue (upgrades are the caller's to keep off it).
func h1Usable(req *http.Request) bool {
	_, expect := req.Header["Expect"]
	return !expect
}

// replayable reports whether a request that may have reached the server
// can be sent again after a reused connection failed before any byte of
// the response (net/http.Transport's rule).
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := req.Header["Idempotency-Key"]
	return ok
}

// RoundTrip sends req (see h1Usable) to req.URL.Host's pool and
// returns the response; its body must be read to EOF or closed. The
// connections of a peer that must prove an identity (withUpstream: mTLS) are
// pooled apart, per identity, from plaintext ones to the same address.
func (h *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var up upstream
	if u := upstreamOf(ctx); u != nil {
		up = u.upstream
	}
	return h.roundTrip(ctx, req, up)
}

// roundTrip is RoundTrip with the request's context and peer given apart:
// ctx, not req.Context(), cancels the request (the proxy copies the
// request and its URL in one allocation, without WithContext), and up
// says what a new connection must be (a context carries it only to the
// dialer).
func (h *h1Client) roundTrip(ctx context.Context, req *http.Request, up upstream) (*http.Response, error) {
	key := req.URL.Host
	if up.peerID != "" {
		key = identityPool(key, up.peerID) // a name per (address, identity), cached
	}
	for {
		pc, err := h.get(ctx, req.URL.Host, key, req.Body == nil || req.Body == http.NoBody, up)
		if err != nil {
			return nil, err
		}
		resp, err := h.send(ctx, pc, req)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		var re retryableError
		if errors.As(err, &re) && ctx.Err() == nil {
			continue // a stale pooled connection: once more on another
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w (%v)", ctxErr, err)
		}
		return nil, err
	}
}

// retryableError: a reused connection failed before the response started.
type retryableError struct{ error }

func (e retryableError) Unwrap() error { return e.error }

func (h *h1Client) send(ctx context.Context, pc *h1Conn, req *http.Request) (*http.Response, error) {
	watch := watchRequest(ctx, pc)
	bodied := req.Body != nil && req.Body != http.NoBody
	var wrote chan error
	if bodied {
		// The body goes out while the response is read: a server may
		// answer before it has read all of it.
		wrote = make(chan error, 1)
		go func() {
			err := writeRequest(pc, req, false)
			if err != nil {
				// The request cannot be finished (the client's body failed,
				// or the server went away): stop waiting for its answer.
				pc.c.Close()
			}
			wrote <- err
		}()
	} else if err := writeRequest(pc, req, true); err != nil {
		watch.stop()
		if pc.reused {
			return nil, retryableError{err}
		}
		return nil, err
	}
	resp, err := h.readHead(pc, req)
	if err != nil {
		watch.stop()
		if bodied {
			pc.c.Close()
			// The writer may be blocked reading a stalled client body: do
			// not wait for it (the connection is closed, it ends at its
			// next write).
			if werr := writerResult(wrote); werr != nil && !errors.Is(err, errHeaderTooLong) {
				return nil, fmt.Errorf("%w (writing the request: %v)", err, werr)
			}
			return nil, err
		}
		if pc.reused && replayable(req) && !errors.Is(err, errHeaderTooLong) && errors.Is(err, errNoResponse) {
			return nil, retryableError{err}
		}
		return nil, err
	}
	reuse := !resp.Close && !req.Close
	resp.Body = &h1Body{h: h, pc: pc, body: resp.Body, watch: watch, reuse: reuse, wrote: wrote}
	return resp, nil
}

// writeRequest writes req to pc; await: the response is read next, with
// nothing else to write (flushAwait).
func writeRequest(pc *h1Conn, req *http.Request, await bool) error {
	if !writeBodilessHead(pc.bw, req) {
		if err := req.Write(pc.bw); err != nil {
			return err
		}
	}
	if await {
		return pc.flushAwait()
	}
	return pc.bw.Flush()
}

// errNoResponse: the connection failed before any byte of a response.
var errNoResponse = errors.New("connection closed before the response")

// readHead reads the final response head (skipping 1xx) within maxHeader
// bytes.
func (h *h1Client) readHead(pc *h1Conn, req *http.Request) (*http.Response, error) {
	pc.lr.n = h.maxHeader
	defer func() { pc.lr.n = -1 }()
	if _, err := pc.br.Peek(1); err != nil {
		return nil, fmt.Errorf("%w: %w", errNoResponse, err)
	}
	// Nearly always the whole head came in the first read: parsed here,
	// without net/http's allocations, when it is plain (h1head.go).
	buf, _ := pc.br.Peek(pc.br.Buffered())
	if n := headLen(buf); n > 0 && (h.maxHeader <= 0 || int64(n) <= h.maxHeader) {
		if resp, ok := parseResponseHead(buf[:n], req, pc.br); ok {
			pc.br.Discard(n)
			return resp, nil
		}
	}
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			if pc.lr.n == 0 {
				// The limit cut a line short: name the cause, not the cut.
				err = errHeaderTooLong
			}
			return nil, fmt.Errorf("reading the response: %w", err)
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("upstream switched protocols without being asked to")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			// Informational: the final head follows, within what is left
			// of the same limit (endless 1xx heads fail).
		default:
			return resp, nil
		}
	}
}

// aLongTimeAgo is a deadline in the past: it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// h1Body returns its connection to the pool at EOF, or closes it when the
// body is closed early, fails, or the connection cannot be reused.
type h1Body struct {
	h     *h1Client
	pc    *h1Conn
	body  io.ReadCloser
	watch requestWatch
	reuse bool
	wrote chan error   // the request body's writer, when there is one
	state atomic.Int32 // bodyOpen, bodyEOF, bodyClosed
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyClosed
)

var errBodyClosed = errors.New("read on a closed response body")

func (b *h1Body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, errBodyClosed
	}
	n, err := b.body.Read(p)
	if err == nil {
		return n, nil
	}
	end := bodyClosed
	if err == io.EOF {
		end = bodyEOF
	}
	if !b.state.CompareAndSwap(bodyOpen, end) {
		return n, err // Close won: it has closed the connection
	}
	canceled := !b.watch.stop()
	if err == io.EOF && b.reuse && !canceled && b.requestWritten() {
		b.h.put(b.pc)
		return n, err
	}
	b.pc.c.Close()
	if canceled && err != io.EOF {
		err = fmt.Errorf("request canceled: %w", err)
	}
	return n, err
}

// Buffered is how many bytes of the response are read from the socket and
// not yet from the body (copyBody's bodyReady): 0 while the request's body
// may still be going out, since the body's last Read may then wait for its
// writer (requestWritten).
func (b *h1Body) Buffered() int {
	if b.wrote != nil || b.state.Load() != bodyOpen {
		return 0
	}
	return b.pc.br.Buffered()
}

// requestWritten reports whether the request went out whole, waiting a
// little for its writer (it may still be flushing the last bytes).
func (b *h1Body) requestWritten() bool {
	if b.wrote == nil {
		return true
	}
	select {
	case err := <-b.wrote:
		return err == nil
	default:
	}
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case err := <-b.wrote:
		return err == nil
	case <-t.C:
		return false
	}
}

// errWriterBusy: the request's writer had not finished when its response
// failed.
var errWriterBusy = errors.New("the request body was still being sent")

// writerResult is the request writer's error when it has finished within a
// moment, errWriterBusy when it has not.
func writerResult(wrote chan error) error {
	t := time.NewTimer(50 * time.Millisecond)
	defer t.Stop()
	select {
	case err := <-wrote:
		return err
	case <-t.C:
		return errWriterBusy
	}
}

// Close before EOF closes the connection: draining could take forever.
func (b *h1Body) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		b.watch.stop()
		b.pc.c.Close()
	}
	return nil
}

// get returns an idle connection for key, or dials addr. bodiless: the
// request goes out with flushAwait, which checks a raw socket itself.
func (h *h1Client) get(ctx context.Context, addr, key string, bodiless bool, up upstream) (*h1Conn, error) {
	now := time.Now()
	h.mu.Lock()
	for l := h.idle[key]; len(l) > 0; l = h.idle[key] {
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		h.idle[key] = l[:len(l)-1]
		idle := now.Sub(pc.since)
		if idle >= h.idleTimeout {
			pc.c.Close()
			continue
		}
		h.mu.Unlock()
		byWrite := bodiless && pc.sock != nil // flushAwait looks then
		if pc.peerClosed(!byWrite) {
			pc.c.Close()
			h.mu.Lock()
			continue
		}
		pc.reused, pc.unchecked = true, byWrite
		return pc, nil
	}
	h.mu.Unlock()
	if up != (upstream{}) {
		ctx = &upstreamCtx{Context: ctx, upstream: up}
	}
	c, err := h.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return newH1Conn(c, key), nil
}

// peerClosed reports whether the server has closed pc (or sent bytes
// nobody asked for: a late body, a 408 on an idle connection), without
// blocking. Every reuse is checked, as net/http.Transport's read loop
// notices such closes and stray bytes at once: one non-blocking recvfrom
// per reused request. A request that still meets a close is replayed when
// it can be (RoundTrip). An mTLS connection is checked twice: for records
// tls.Conn has already read (a read with a past deadline, which touches no
// socket), then on its socket, where any pending record (a close_notify, or
// anything else nobody asked for) counts as closed, since peeking cannot
// tell records apart; the session tickets of TLS 1.3 come before the first
// response and are read with it.
//
// socket: look at the socket too (not when flushAwait will); through
// pc.sock when there is one, which allocates nothing.
func (pc *h1Conn) peerClosed(socket bool) bool {
	c := pc.c
	if tc, ok := c.(*tls.Conn); ok {
		// Records tls.Conn already holds (read with the response's last
		// one) are invisible to a socket peek: try a read that cannot block.
		var b [1]byte
		var n int
		var err error
		if rc := recConnOf(tc); rc != nil {
			n, err = rc.probe(tc, b[:])
		} else {
			tc.SetReadDeadline(aLongTimeAgo)
			n, err = tc.Read(b[:])
			tc.SetReadDeadline(time.Time{})
		}
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return true
		}
		c = tc.NetConn()
	}
	if !socket {
		return false
	}
	if pc.sock != nil {
		return sockClosed(pc.sock)
	}
	var b [1]byte
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		_, errno := sockio.PeekFD(fd, b[:])
		closed = errno != syscall.EAGAIN
		return true
	})
	return closed || err != nil
}

// put pools an idle connection (or closes it when the pool is full).
func (h *h1Client) put(pc *h1Conn) {
	if pc.br.Buffered() > 0 { // bytes after the response: not a clean connection
		pc.c.Close()
		return
	}
	pc.since = time.Now()
	h.mu.Lock()
	l := h.idle[pc.key]
	if len(l) >= h.maxIdle {
		h.mu.Unlock()
		pc.c.Close()
		return
	}
	h.idle[pc.key] = append(l, pc)
	if h.sweep == nil {
		h.sweep = time.AfterFunc(h.idleTimeout, h.expire)
	}
	h.mu.Unlock()
}

// expire closes connections idle longer than idleTimeout, and comes back
// while any are pooled.
func (h *h1Client) expire() {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweep = nil
	for k, l := range h.idle {
		kept := l[:0]
		for _, pc := range l {
			if now.Sub(pc.since) >= h.idleTimeout {
				pc.c.Close()
			} else {
				kept = append(kept, pc)
			}
		}
		clear(l[len(kept):])
		if len(kept) == 0 {
			delete(h.idle, k)
		} else {
			h.idle[k] = kept
		}
	}
	if len(h.idle) > 0 {
		h.sweep = time.AfterFunc(h.idleTimeout/2, h.expire)
	}
}

// CloseIdleConnections closes every pooled connection; later idle ones
// are pooled again (as net/http.Transport's).
func (h *h1Client) CloseIdleConnections() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, l := range h.idle {
		for _, pc := range l {
			pc.c.Close()
		}
		delete(h.idle, k)
	}
}
