package h2server

import (
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/h2wire"
)

// stream is one request and its response. Its request, response writer
// and body are one allocation.
type stream struct {
	c      *conn
	id     uint32
	cancel context.CancelFunc
	req    http.Request
	url    url.URL
	w      responseWriter
	body   body

	// Under c.mu.
	sendWindow int64             // credit for DATA
	recv       h2wire.RecvWindow // the credit the client has for DATA
	received   int64             // DATA bytes, checked against declared
	declared   int64             // the request's Content-Length, -1 if none
	trailers   bool              // the request declared trailers (read loop only)
	remoteDone bool              // END_STREAM received, or the stream reset
	reset      bool

	wroteReset bool // under c.wmu
}

// fail ends st's request with err: its context, its body, its writes.
func (st *stream) fail(err error) {
	st.cancel()
	st.body.fail(err)
}

// newStream makes the stream of a request's HEADERS; nil and the code of
// the stream error when the request is malformed (RFC 9113 §8.1.1).
func (c *conn) newStream(f *h2wire.HeaderBlock) (*stream, http2.ErrCode) {
	var method, scheme, authority, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default: // :protocol: extended CONNECT is not offered
			return nil, http2.ErrCodeProtocol
		}
	}
	connect := method == "CONNECT"
	if connect {
		if path != "" || scheme != "" || authority == "" {
			return nil, http2.ErrCodeProtocol
		}
	} else if method == "" || path == "" || (scheme != "http" && scheme != "https") {
		return nil, http2.ErrCodeProtocol
	}
	if strings.IndexByte(authority, '@') >= 0 && !connect {
		return nil, http2.ErrCodeProtocol // userinfo (RFC 9113 §8.3.1)
	}

	st := &stream{c: c, id: f.StreamID}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	// The values' slices share one array; a name seen twice gets its own.
	vals := make([]string, len(regular))
	for i, hf := range regular {
		if h2wire.ConnectionSpecific(hf.Name) || (hf.Name == "te" && hf.Value != "trailers") {
			return nil, http2.ErrCodeProtocol // §8.2.2
		}
		k := c.canon.Canonical(hf.Name)
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value)
			continue
		}
		vals[i] = hf.Value
		h[k] = vals[i : i+1 : i+1]
	}
	if authority == "" {
		authority = h.Get("Host")
	}
	needsContinue := false
	if vv, ok := h["Expect"]; ok && httpguts.HeaderValuesContainsToken(vv, "100-continue") {
		needsContinue = true
		delete(h, "Expect")
	}
	if cookies := h["Cookie"]; len(cookies) > 1 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	var trailer http.Header
	for _, v := range h["Trailer"] {
		for key := range strings.SplitSeq(v, ",") {
			key = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(key))
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length", "":
			default:
				if trailer == nil {
					trailer = make(http.Header)
				}
				trailer[key] = nil
			}
		}
	}
	delete(h, "Trailer")

	r := &st.req
	r.Method = method
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = h
	r.Host = authority
	r.RemoteAddr = c.remote
	r.Trailer = trailer
	if connect {
		st.url.Host = authority
		r.RequestURI = authority
	} else {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, http2.ErrCodeProtocol
		}
		st.url = *u
		r.RequestURI = path
	}
	r.URL = &st.url
	if f.EndStream {
		r.ContentLength = 0
		r.Body = http.NoBody
		st.remoteDone = true
	} else {
		r.ContentLength = -1
		if vv, ok := h["Content-Length"]; ok {
			n, err := strconv.ParseUint(vv[0], 10, 63)
			if err != nil || len(vv) > 1 {
				return nil, http2.ErrCodeProtocol
			}
			r.ContentLength = int64(n)
		}
		st.body.st = st
		st.body.needsContinue = needsContinue
		r.Body = &st.body
	}
	st.declared = r.ContentLength
	st.trailers = trailer != nil
	ctx, cancel := context.WithCancel(c.ctx)
	st.cancel = cancel
	*r = *r.WithContext(ctx)
	st.body.cond.L = &st.body.mu
	st.w.st = st

	c.mu.Lock()
	st.sendWindow = c.initWindow
	st.recv = h2wire.NewRecvWindow(streamRecvWindow)
	c.mu.Unlock()
	return st, 0
}

// processData delivers a DATA frame to its stream's body, within the
// windows the client was granted.
func (c *conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length) // padding included
	data := f.Data()
	c.mu.Lock()
	if !c.recv.Take(n) {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st := c.streams[id]
	if st == nil || st.remoteDone {
		idle := id > c.maxID && !c.goingAway
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		// A stream that ended, was reset, or came after GOAWAY: its data
		// is dropped and its credit returned.
		c.credit(nil, n)
		if st != nil && !st.reset {
			c.resetStream(st, http2.ErrCodeStreamClosed, errStreamReset)
		}
		return nil
	}
	if !st.recv.Take(n) {
		c.mu.Unlock()
		c.credit(nil, n)
		c.resetStream(st, http2.ErrCodeFlowControl, errStreamReset)
		return nil
	}
	st.received += int64(len(data))
	end := f.StreamEnded()
	cl := st.declared
	bad := cl >= 0 && (st.received > cl || end && st.received != cl)
	if end {
		st.remoteDone = true
	}
	c.mu.Unlock()
	if bad {
		c.credit(nil, n)
		c.resetStream(st, http2.ErrCodeProtocol, errStreamReset)
		return nil
	}
	if pad := n - int64(len(data)); pad > 0 {
		c.credit(st, pad)
	}
	if len(data) > 0 && !st.body.add(data) {
		c.credit(st, int64(len(data))) // the handler no longer reads
	}
	if end {
		st.body.fail(io.EOF)
	}
	return nil
}

// processTrailers ends a request body with its trailers (HEADERS with
// END_STREAM after the request's HEADERS).
func (c *conn) processTrailers(st *stream, f *h2wire.HeaderBlock) error {
	c.mu.Lock()
	done := st.remoteDone
	c.mu.Unlock()
	if done {
		return nil // after END_STREAM: the stream is half-closed (remote)
	}
	if !f.EndStream {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if len(f.PseudoFields()) > 0 {
		c.resetStream(st, http2.ErrCodeProtocol, errStreamReset)
		return nil
	}
	// Kept by the body until its reader reaches EOF, which copies them
	// into the request's Trailer (declared ones only, as net/http does):
	// until then the request may be read elsewhere (an upstream's
	// transport checks its fields).
	var trailer http.Header
	for _, hf := range f.RegularFields() {
		k := c.canon.Canonical(hf.Name)
		if !httpguts.ValidTrailerHeader(k) {
			c.resetStream(st, http2.ErrCodeProtocol, errStreamReset)
			return nil
		}
		if st.trailers {
			if trailer == nil {
				trailer = make(http.Header)
			}
			trailer[k] = append(trailer[k], hf.Value)
		}
	}
	st.body.mu.Lock()
	st.body.trailer = trailer
	st.body.mu.Unlock()
	c.mu.Lock()
	cl := st.declared
	bad := cl >= 0 && st.received != cl
	st.remoteDone = true
	c.mu.Unlock()
	if bad {
		c.resetStream(st, http2.ErrCodeProtocol, errStreamReset)
		return nil
	}
	st.body.fail(io.EOF)
	return nil
}

// credit returns n bytes of receive window (of st, when not nil, and of
// the connection): a WINDOW_UPDATE goes out once half a window is owed.
// A stream whose body has ended is owed nothing.
func (c *conn) credit(st *stream, n int64) {
	var connInc, streamInc int64
	c.mu.Lock()
	connInc = c.recv.Return(n, connRecvWindow)
	if st != nil && !st.remoteDone {
		streamInc = st.recv.Return(n, streamRecvWindow)
	}
	closed := c.closed
	c.mu.Unlock()
	if closed || (connInc == 0 && streamInc == 0) {
		return
	}
	c.write(func() error {
		if connInc > 0 {
			if err := c.out.Framer.WriteWindowUpdate(0, uint32(connInc)); err != nil {
				return err
			}
		}
		if streamInc > 0 && !st.wroteReset {
			return c.out.Framer.WriteWindowUpdate(st.id, uint32(streamInc))
		}
		return nil
	})
}

// body is a request body: the DATA the read loop received, read by the
// handler.
type body struct {
	st            *stream
	mu            sync.Mutex
	cond          sync.Cond
	buf           []byte // received, not yet read: buf[off:]
	off           int
	err           error // io.EOF at the end, or why the stream ended
	closed        bool  // the handler closed it (or returned)
	needsContinue bool
	trailer       http.Header // received, copied into req.Trailer at EOF
}

// add appends data; false when the handler no longer reads (the caller
// returns its credit).
func (b *body) add(data []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil {
		return false
	}
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	b.buf = append(b.buf, data...)
	b.cond.Signal()
	return true
}

// fail ends the body with err (io.EOF: the body is complete); the first
// error stays.
func (b *body) fail(err error) {
	if b.st == nil {
		return // no body (END_STREAM with the headers)
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.needsContinue {
		b.needsContinue = false
		b.mu.Unlock()
		b.st.w.writeContinue()
		b.mu.Lock()
	}
	for b.off == len(b.buf) && b.err == nil && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	if b.off == len(b.buf) {
		err := b.err
		if err == io.EOF && b.trailer != nil {
			for k, vv := range b.trailer {
				b.st.req.Trailer[k] = vv
			}
			b.trailer = nil
		}
		b.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	b.mu.Unlock()
	b.st.c.credit(b.st, int64(n))
	return n, nil
}

// Close stops reading: what is buffered, and what comes later, is
// dropped and its credit returned.
func (b *body) Close() error {
	b.closeRead()
	return nil
}

func (b *body) closeRead() {
	if b.st == nil {
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	n := len(b.buf) - b.off
	b.buf, b.off = nil, 0
	b.cond.Broadcast()
	b.mu.Unlock()
	if n > 0 {
		b.st.c.credit(nil, int64(n))
	}
}
