package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/h2wire"
)

// stream is one request and its response; the response and its body are
// part of the one allocation.
type stream struct {
	cc     *ClientConn
	id     uint32
	req    *http.Request
	isHead bool

	// Under cc.mu.
	sendWindow int64             // credit for the request's DATA
	recv       h2wire.RecvWindow // the credit the server has for the response's DATA
	sentEnd    bool              // END_STREAM sent (or the stream reset)
	recvEnd    bool              // END_STREAM received (or the stream reset)
	reset      bool              // reset by either side, or the connection closed

	closedOut bool // under cc.wmu: no more frames (RST_STREAM sent or received)

	// The read loop's.
	headersDone bool
	noBody      bool  // no response body follows (HEAD, 204, 304): DATA is dropped
	declared    int64 // the response's Content-Length, -1 if none
	received    int64 // DATA bytes of the response

	// Under mu.
	mu       sync.Mutex
	cond     sync.Cond // the response's header, body data, failure
	resp     http.Response
	gotResp  bool
	err      error // why the stream failed
	body     body
	stopCtx  func() bool   // stops the context's AfterFunc
	finished bool          // both ends done: the context no longer matters
	reqBody  io.ReadCloser // the request body being sent, closed on failure
}

// errStreamDone stops the sending of a request body whose stream ended:
// the stream's own error says why.
var errStreamDone = errors.New("h2client: stream done")

// RoundTrip sends req and returns its response once its header arrives;
// the request body is sent meanwhile, and its response body is read
// from the stream as it comes. It uses the slot a Reserve took, or takes
// one; one that fails before opening its stream gives a reserved slot
// back. req.Body is closed, as http.RoundTripper requires, but for
// ErrUnusable: the request may then go to another connection as it is.
// Cancelling req's context resets the stream.
func (cc *ClientConn) RoundTrip(req *http.Request) (*http.Response, error) {
	return cc.Send(req.Context(), req)
}

// Send is RoundTrip with the request's context given apart: ctx, not
// req.Context(), cancels the request, so that a caller with its own
// context need not copy the request (Request.WithContext) to set it.
func (cc *ClientConn) Send(ctx context.Context, req *http.Request) (*http.Response, error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	fail := func(err error) (*http.Response, error) {
		cc.Release()
		if body != nil {
			body.Close()
		}
		return nil, err
	}
	if req.URL == nil {
		return fail(errors.New("h2client: request has no URL"))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if err := validRequest(req, host); err != nil {
		return fail(err)
	}
	cl := int64(0)
	if body != nil {
		cl = req.ContentLength
		if cl == 0 {
			cl = -1 // a body of unknown length
		}
	}
	st := &stream{cc: cc, req: req, isHead: req.Method == http.MethodHead}
	st.cond.L = &st.mu
	st.body.st = st
	if err := cc.writeHeaders(st, req, host, cl, body == nil); err != nil {
		if body != nil && !errors.Is(err, ErrUnusable) {
			body.Close()
		}
		return nil, err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { cc.resetStream(st, http2.ErrCodeCancel, ctx.Err()) })
		st.mu.Lock()
		if st.finished {
			st.mu.Unlock()
			stop()
		} else {
			st.stopCtx = stop
			st.mu.Unlock()
		}
	}
	if body != nil {
		st.mu.Lock()
		failed := st.err != nil
		if !failed {
			st.reqBody = body
		}
		st.mu.Unlock()
		if failed {
			body.Close()
		} else {
			go st.sendBody(body, cl)
		}
	}
	st.mu.Lock()
	for !st.gotResp && st.err == nil {
		st.cond.Wait()
	}
	if !st.gotResp {
		err := st.err
		st.mu.Unlock()
		return nil, err
	}
	st.mu.Unlock()
	return &st.resp, nil
}

// validRequest checks what HTTP/2 cannot carry before anything is
// encoded: the connection's header table is shared by its requests, so a
// request must not fail halfway through its header block.
func validRequest(req *http.Request, host string) error {
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("h2client: invalid authority %q", host)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2client: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2client: invalid value of header field %q", k)
			}
		}
	}
	for k := range req.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2client: invalid trailer name %q", k)
		}
	}
	return nil
}

// writeHeaders opens st and writes its request's HEADERS (with
// END_STREAM when end): stream IDs are taken in the order their HEADERS
// are written. ErrUnusable when the connection takes no more streams.
func (cc *ClientConn) writeHeaders(st *stream, req *http.Request, host string, cl int64, end bool) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.mu.Lock()
	if cc.reserved > 0 {
		cc.reserved--
	}
	// A reserved slot is checked again: the server's SETTINGS may have
	// lowered the limit since (the first ones arrive after the
	// connection took requests).
	if cc.out.Err() != nil || !cc.usableLocked() || len(cc.streams) >= cc.maxStreams {
		cc.mu.Unlock()
		return ErrUnusable
	}
	st.id = cc.lastID + 2
	if cc.lastID == 0 {
		st.id = 1
	}
	cc.lastID = st.id
	st.sendWindow = cc.initWindow
	st.recv = h2wire.NewRecvWindow(streamRecvWindow)
	st.sentEnd = end
	cc.streams[st.id] = st
	maxFrame := cc.maxFrame
	cc.mu.Unlock()
	return cc.out.Write(func() error {
		cc.out.Block.Reset()
		cc.encodeRequest(req, host, cl)
		return cc.out.WriteBlock(st.id, end, maxFrame)
	})
}

// defaultUserAgent is sent when a request has no User-Agent field, as
// net/http's HTTP/2 client does.
const defaultUserAgent = "Go-http-client/2.0"

// encodeRequest encodes req's header block into cc.out.Block (validRequest
// checked it). cc.wmu is held.
func (cc *ClientConn) encodeRequest(req *http.Request, host string, cl int64) {
	enc := cc.out.Enc
	field := func(name, value string) { enc.WriteField(hpack.HeaderField{Name: name, Value: value}) }
	field(":authority", host)
	field(":method", req.Method)
	if req.Method != http.MethodConnect {
		field(":path", req.URL.RequestURI())
		scheme := req.URL.Scheme
		if scheme == "" {
			scheme = "http"
		}
		field(":scheme", scheme)
	}
	didUA := false
	for k, vv := range req.Header {
		lk := cc.lowerName(k)
		switch lk {
		case "host", "content-length", "trailer", "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			continue
		case "user-agent":
			didUA = true
			if len(vv) > 0 && vv[0] != "" {
				field(lk, vv[0])
			}
			continue
		case "te":
			// Only "trailers" crosses HTTP/2 (RFC 9113 §8.2.2).
			for _, v := range vv {
				if strings.EqualFold(textTrim(v), "trailers") {
					field(lk, "trailers")
					break
				}
			}
			continue
		}
		for _, v := range vv {
			field(lk, v)
		}
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, cc.lowerName(k))
		}
		field("trailer", strings.Join(keys, ","))
	}
	if cl > 0 || (cl == 0 && (req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch)) {
		field("content-length", strconv.FormatInt(cl, 10))
	}
	if !didUA {
		field("user-agent", defaultUserAgent)
	}
}

// maxLowerCache bounds a connection's cache of lower-case names.
const maxLowerCache = 256

// lowerName is a (valid) field name in lower case, cached per connection
// for names that are not common; cc.wmu is held.
func (cc *ClientConn) lowerName(k string) string {
	if lk, ok := h2wire.CommonLower(k); ok {
		return lk
	}
	if lk, ok := cc.lower[k]; ok {
		return lk
	}
	lk := strings.ToLower(k)
	if cc.lower == nil {
		cc.lower = map[string]string{}
	}
	if len(cc.lower) < maxLowerCache {
		cc.lower[k] = lk
	}
	return lk
}

// sendBufs are the buffers request bodies are read into.
var sendBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

var (
	errBodyTooLong  = errors.New("h2client: request body longer than its Content-Length")
	errBodyTooShort = errors.New("h2client: request body shorter than its Content-Length")
)

// sendBody sends the request body as DATA within the server's windows,
// then its trailers or END_STREAM; it closes the body. A failure resets
// the stream.
func (st *stream) sendBody(body io.ReadCloser, cl int64) {
	cc := st.cc
	bufp := sendBufs.Get().(*[]byte)
	buf := *bufp
	var sent int64
	var err error
	for {
		n, rerr := body.Read(buf)
		sent += int64(n)
		if cl >= 0 && sent > cl {
			err = errBodyTooLong
			break
		}
		if rerr == io.EOF {
			if cl >= 0 && sent != cl {
				err = errBodyTooShort
				break
			}
			err = cc.endRequest(st, buf[:n])
			break
		}
		if n > 0 {
			if err = cc.writeData(st, buf[:n], false); err != nil {
				break
			}
		}
		if rerr != nil {
			err = fmt.Errorf("h2client: reading the request body: %w", rerr)
			break
		}
	}
	sendBufs.Put(bufp)
	st.mu.Lock()
	rb := st.reqBody
	st.reqBody = nil
	st.mu.Unlock()
	if rb != nil {
		rb.Close()
	}
	switch {
	case err == nil:
		cc.end(st, true)
	case errors.Is(err, errStreamDone):
		// Reset or closed: the stream's error is set.
	default:
		cc.resetStream(st, http2.ErrCodeCancel, err)
	}
}

// endRequest sends the last of the request body and ends the stream:
// with the trailers when the request has some (known once its body was
// read to the end), else with END_STREAM on the last DATA frame.
func (cc *ClientConn) endRequest(st *stream, last []byte) error {
	var trailers http.Header
	for k, vv := range st.req.Trailer {
		if len(vv) > 0 {
			if trailers == nil {
				trailers = make(http.Header, len(st.req.Trailer))
			}
			trailers[k] = vv
		}
	}
	if trailers == nil {
		return cc.writeData(st, last, true)
	}
	if err := cc.writeData(st, last, false); err != nil {
		return err
	}
	return cc.write(func() error {
		if st.closedOut {
			return errStreamDone
		}
		cc.out.Block.Reset()
		for k, vv := range trailers {
			lk := cc.lowerName(k)
			for _, v := range vv {
				if httpguts.ValidHeaderFieldValue(v) {
					cc.out.Enc.WriteField(hpack.HeaderField{Name: lk, Value: v})
				}
			}
		}
		return cc.out.WriteBlock(st.id, true, cc.frameSize())
	})
}

// writeData sends data as DATA frames of st within the windows, waiting
// for credit, with END_STREAM on the last when end.
func (cc *ClientConn) writeData(st *stream, data []byte, end bool) error {
	for len(data) > 0 || end {
		n := 0
		if len(data) > 0 {
			var err error
			if n, err = cc.take(st, len(data)); err != nil {
				return err
			}
		}
		chunk := data[:n]
		last := end && n == len(data)
		err := cc.write(func() error {
			if st.closedOut {
				return errNotWritten
			}
			max := cc.frameSize()
			for {
				part := chunk[:min(len(chunk), max)]
				chunk = chunk[len(part):]
				if err := cc.out.Framer.WriteData(st.id, last && len(chunk) == 0, part); err != nil {
					return err
				}
				if len(chunk) == 0 {
					return nil
				}
			}
		})
		if err != nil {
			if err == errNotWritten {
				// The server never got this credit's bytes: the
				// connection's window is still theirs.
				cc.refund(n)
			}
			return errStreamDone // the stream was reset, or the connection closes
		}
		data = data[n:]
		if last {
			return nil
		}
	}
	return nil
}

// errNotWritten: a write found its stream reset before writing anything.
var errNotWritten = errors.New("h2client: stream reset before the write")

// refund gives back connection-level send credit taken for DATA that was
// not sent.
func (cc *ClientConn) refund(n int) {
	if n == 0 {
		return
	}
	cc.mu.Lock()
	cc.sendWindow += int64(n)
	cc.cond.Broadcast()
	cc.mu.Unlock()
}

// take reserves up to want bytes of DATA credit from the stream's and the
// connection's windows, waiting for credit.
func (cc *ClientConn) take(st *stream, want int) (int, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for {
		if st.reset || cc.closed {
			return 0, errStreamDone
		}
		if n := min(int64(want), st.sendWindow, cc.sendWindow); n > 0 {
			st.sendWindow -= n
			cc.sendWindow -= n
			return int(n), nil
		}
		cc.cond.Wait()
	}
}

// fail ends st with err: a RoundTrip waiting gets it, the response body
// ends with it (unless it ended already), the request body is closed.
// The first error stays.
func (st *stream) fail(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.endBodyLocked(err)
	rb := st.reqBody
	st.reqBody = nil
	st.mu.Unlock()
	if rb != nil {
		// A Read of it may be waiting (on the client sending it), and
		// some bodies' Close waits for their Read.
		go rb.Close()
	}
}

// ended: both ends of st are done, it left the connection; its context
// no longer matters.
func (st *stream) ended() {
	st.mu.Lock()
	st.finished = true
	stop := st.stopCtx
	st.stopCtx = nil
	st.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// statusLines are net/http's Response.Status for the codes it names.
var statusLines = func() []string {
	s := make([]string, 600)
	for code := range s {
		if text := http.StatusText(code); text != "" {
			s[code] = strconv.Itoa(code) + " " + text
		}
	}
	return s
}()

func statusLine(code int) string {
	if code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return strconv.Itoa(code)
}
