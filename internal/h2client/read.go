package h2client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/h2wire"
)

// errGoneAway closes a connection whose last stream ended after the
// server's GOAWAY.
var errGoneAway = errors.New("h2client: server sent GOAWAY")

// readLoop reads frames until the connection fails or closes, then
// closes it.
func (cc *ClientConn) readLoop() {
	err := cc.readFrames()
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		cc.goAway(http2.ErrCode(ce), fmt.Errorf("h2client: protocol error from the server: %w", err))
		return
	}
	cc.closeWith(fmt.Errorf("h2client: connection lost: %w", err))
}

// readFrame reads and processes one frame.
func (cc *ClientConn) readFrame() error {
	f, err := cc.fr.ReadFrame()
	if err != nil {
		return err
	}
	cc.frames.Add(1)
	return cc.processFrame(f)
}

// readFrames reads frames until an error that ends the connection: a
// stream error fails only its stream.
func (cc *ClientConn) readFrames() error {
	for {
		err := cc.readFrame()
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			// A malformed response header block (decoded: the
			// connection's header table is in step): that stream fails.
			cc.mu.Lock()
			st := cc.streams[se.StreamID]
			idle := cc.idleLocked(se.StreamID)
			cc.mu.Unlock()
			if st != nil {
				cc.resetStream(st, se.Code, fmt.Errorf("h2client: malformed response: %w", err))
			} else if idle {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
			continue
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			return http2.ConnectionError(http2.ErrCodeFrameSize)
		}
		return err
	}
}

// idleLocked reports whether id names a stream this client never opened
// (a frame on it is a connection error); cc.mu is held.
func (cc *ClientConn) idleLocked(id uint32) bool {
	return id%2 == 0 || id > cc.lastID
}

func (cc *ClientConn) processFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		b, err := cc.hr.Read(cc.fr, f)
		if err != nil {
			return err // a stream error fails the stream (readFrames)
		}
		return cc.processHeaders(b)
	case *http2.DataFrame:
		return cc.processData(f)
	case *http2.SettingsFrame:
		return cc.processSettings(f)
	case *http2.WindowUpdateFrame:
		return cc.processWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			cc.write(func() error { return cc.out.Framer.WritePing(true, data) })
		}
		return nil
	case *http2.RSTStreamFrame:
		cc.mu.Lock()
		st := cc.streams[f.StreamID]
		idle := cc.idleLocked(f.StreamID)
		cc.mu.Unlock()
		if st == nil {
			if idle {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
			return nil
		}
		cc.serverReset(st, f.ErrCode)
		return nil
	case *http2.GoAwayFrame:
		cc.processGoAway(f)
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // push is disabled
	default:
		return nil // PRIORITY, PRIORITY_UPDATE, unknown types
	}
}

func (cc *ClientConn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	cc.mu.Lock()
	if !cc.gotSettings {
		cc.gotSettings = true
		cc.maxStreams = defaultMaxStreams
	}
	cc.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			cc.mu.Lock()
			cc.maxStreams = int(min(s.Val, 1<<20))
			cc.mu.Unlock()
		case http2.SettingInitialWindowSize:
			cc.mu.Lock()
			defer cc.mu.Unlock()
			delta := int64(s.Val) - cc.initWindow
			cc.initWindow = int64(s.Val)
			for _, st := range cc.streams {
				st.sendWindow += delta
				if st.sendWindow > h2wire.MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			cc.cond.Broadcast()
		case http2.SettingMaxFrameSize:
			cc.mu.Lock()
			cc.maxFrame = int(s.Val)
			cc.mu.Unlock()
		case http2.SettingHeaderTableSize:
			cc.wmu.Lock()
			cc.out.Enc.SetMaxDynamicTableSizeLimit(s.Val)
			cc.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	cc.write(func() error { return cc.out.Framer.WriteSettingsAck() })
	return nil
}

func (cc *ClientConn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	cc.mu.Lock()
	if f.StreamID == 0 {
		defer cc.mu.Unlock()
		cc.sendWindow += int64(f.Increment)
		if cc.sendWindow > h2wire.MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		cc.cond.Broadcast()
		return nil
	}
	st := cc.streams[f.StreamID]
	if st == nil {
		idle := cc.idleLocked(f.StreamID)
		cc.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.sendWindow += int64(f.Increment)
	over := st.sendWindow > h2wire.MaxWindow
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if over {
		cc.resetStream(st, http2.ErrCodeFlowControl, errors.New("h2client: the server's window for the request overflowed"))
	}
	return nil
}

// processGoAway: the server takes no more streams. Those above the last
// one it names fail with an error matching ErrRefused; the others finish,
// and the connection closes after the last.
func (cc *ClientConn) processGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goingAway = true
	var refused []*stream
	for id, st := range cc.streams {
		if id > f.LastStreamID {
			refused = append(refused, st)
			st.sentEnd, st.recvEnd, st.reset = true, true, true
			delete(cc.streams, id)
		}
	}
	empty := len(cc.streams) == 0
	cc.cond.Broadcast()
	cc.mu.Unlock()
	err := &goAwayError{code: f.ErrCode, last: f.LastStreamID}
	for _, st := range refused {
		cc.stopFrames(st)
		st.fail(err)
		st.ended()
	}
	if empty {
		cc.closeWith(errGoneAway)
	}
}

// processHeaders takes a response's HEADERS, or its trailers.
func (cc *ClientConn) processHeaders(f *h2wire.HeaderBlock) error {
	cc.mu.Lock()
	st := cc.streams[f.StreamID]
	idle := cc.idleLocked(f.StreamID)
	ended := st != nil && st.recvEnd
	cc.mu.Unlock()
	switch {
	case st == nil && idle:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case st == nil || ended:
		return nil // a stream this client reset, or one whose response ended
	case st.headersDone:
		cc.processTrailers(st, f)
	default:
		cc.processResponse(st, f)
	}
	return nil
}

// errHeaderTooLarge fails a request whose response header list is over
// Config.MaxHeaderBytes.
var errHeaderTooLarge = errors.New("h2client: response header list larger than the limit")

// processResponse delivers a response's header to its RoundTrip.
// Informational responses (1xx) are skipped.
func (cc *ClientConn) processResponse(st *stream, f *h2wire.HeaderBlock) {
	if f.Truncated {
		cc.resetStream(st, http2.ErrCodeCancel, errHeaderTooLarge)
		return
	}
	var status string
	for _, hf := range f.PseudoFields() {
		if hf.Name != ":status" {
			cc.malformed(st, "pseudo-header "+hf.Name)
			return
		}
		status = hf.Value
	}
	code, err := strconv.Atoi(status)
	if err != nil || len(status) != 3 || code < 100 {
		cc.malformed(st, fmt.Sprintf("status %q", status))
		return
	}
	end := f.EndStream
	if code < 200 {
		if end || code == http.StatusSwitchingProtocols {
			cc.malformed(st, "informational status "+status)
		}
		return
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	// The values' slices share one array; a name seen twice gets its own.
	vals := make([]string, len(regular))
	var trailer http.Header
	for i, hf := range regular {
		k := cc.canon.Canonical(hf.Name)
		if k == "Trailer" {
			for key := range strings.SplitSeq(hf.Value, ",") {
				if key = textTrim(key); key != "" {
					if trailer == nil {
						trailer = make(http.Header)
					}
					trailer[http.CanonicalHeaderKey(key)] = nil
				}
			}
			continue
		}
		if vv, ok := h[k]; ok {
			h[k] = append(vv, hf.Value)
			continue
		}
		vals[i] = hf.Value
		h[k] = vals[i : i+1 : i+1]
	}
	cl := int64(-1)
	if vv := h["Content-Length"]; len(vv) > 0 {
		// Repeated values must agree (they collapse into one); a
		// response with two lengths, or one that is not a number, is
		// malformed (RFC 9113 §8.1.1): passed on to HTTP/1 it could
		// desynchronise a client.
		n, err := strconv.ParseUint(vv[0], 10, 63)
		for _, v := range vv[1:] {
			if v != vv[0] {
				err = errors.New("differing values")
			}
		}
		if err != nil {
			cc.malformed(st, fmt.Sprintf("content-length %q", vv))
			return
		}
		if len(vv) > 1 {
			h["Content-Length"] = vv[:1]
		}
		cl = int64(n)
	} else if end && !st.isHead {
		cl = 0
	}
	// No body follows a HEAD's response, a 204 or a 304, whatever their
	// Content-Length says (RFC 9110 §6.4.1).
	st.noBody = st.isHead || code == http.StatusNoContent || code == http.StatusNotModified
	st.headersDone = true
	st.declared = -1
	if !st.noBody {
		st.declared = cl
	}
	sending := false // the request body is still being sent
	if end {
		// Done before the response is delivered: its caller finds the
		// stream's slot free.
		cc.end(st, false)
		cc.mu.Lock()
		sending = cc.streams[st.id] == st
		cc.mu.Unlock()
	}

	st.mu.Lock()
	r := &st.resp
	r.Status = statusLine(code)
	r.StatusCode = code
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = h
	r.Trailer = trailer
	r.ContentLength = cl
	r.Request = st.req
	switch {
	case end && sending:
		// The response ended with its header while the request body is
		// still being sent: its body ends at once, and closing it stops
		// the request (RST_STREAM CANCEL), as when a body is closed
		// early.
		st.body.err = io.EOF
		if cl > 0 {
			st.body.err = io.ErrUnexpectedEOF
		}
		r.Body = &st.body
	case st.noBody:
		r.Body = http.NoBody
	case end && cl > 0:
		r.Body = missingBody{}
	case end:
		r.Body = http.NoBody
	default:
		r.Body = &st.body
	}
	st.gotResp = true
	st.cond.Broadcast()
	st.mu.Unlock()
}

// textTrim trims a list element's spaces and tabs.
func textTrim(s string) string { return strings.Trim(s, " \t") }

// missingBody is the body of a response that ended with its header but
// declared a length.
type missingBody struct{}

func (missingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
func (missingBody) Close() error             { return nil }

// malformed resets st for a malformed response.
func (cc *ClientConn) malformed(st *stream, what string) {
	cc.resetStream(st, http2.ErrCodeProtocol, errors.New("h2client: malformed response: "+what))
}

// processTrailers ends a response body with its trailers.
func (cc *ClientConn) processTrailers(st *stream, f *h2wire.HeaderBlock) {
	if !f.EndStream {
		cc.malformed(st, "trailers without END_STREAM")
		return
	}
	if len(f.PseudoFields()) > 0 {
		cc.malformed(st, "pseudo-header in trailers")
		return
	}
	if st.declared >= 0 && st.received != st.declared {
		cc.malformed(st, "body shorter than its Content-Length")
		return
	}
	regular := f.RegularFields()
	trailer := make(http.Header, len(regular))
	for _, hf := range regular {
		k := cc.canon.Canonical(hf.Name)
		if !httpguts.ValidTrailerHeader(k) {
			continue
		}
		trailer[k] = append(trailer[k], hf.Value)
	}
	cc.end(st, false) // before the reader sees EOF, as in processResponse
	st.mu.Lock()
	st.body.trailer = trailer
	st.endBodyLocked(io.EOF)
	st.mu.Unlock()
}

// processData delivers a DATA frame to its response body, within the
// windows the server was granted.
func (cc *ClientConn) processData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included
	data := f.Data()
	cc.mu.Lock()
	if !cc.recv.Take(n) {
		cc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	st := cc.streams[f.StreamID]
	if st == nil || st.recvEnd {
		idle := st == nil && cc.idleLocked(f.StreamID)
		cc.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		// A stream this client reset, or whose response ended: the data
		// is dropped and its credit returned.
		cc.credit(nil, n)
		return nil
	}
	if !st.recv.Take(n) {
		cc.mu.Unlock()
		cc.credit(nil, n)
		cc.resetStream(st, http2.ErrCodeFlowControl, errors.New("h2client: the server sent more than the stream's window"))
		return nil
	}
	cc.mu.Unlock()
	if !st.headersDone {
		cc.credit(nil, n)
		cc.malformed(st, "DATA before HEADERS")
		return nil
	}
	st.received += int64(len(data))
	end := f.StreamEnded()
	if st.declared >= 0 && (st.received > st.declared || end && st.received != st.declared) {
		cc.credit(nil, n)
		cc.malformed(st, "body length differs from its Content-Length")
		return nil
	}
	if pad := n - int64(len(data)); pad > 0 {
		cc.credit(st, pad)
	}
	if len(data) > 0 && (st.noBody || !st.body.add(data)) {
		cc.credit(st, int64(len(data))) // not read: no body expected, or a closed body
	}
	if end {
		cc.end(st, false) // before the reader sees EOF, as in processResponse
		st.mu.Lock()
		st.endBodyLocked(io.EOF)
		st.mu.Unlock()
	}
	return nil
}

// credit returns n bytes of receive window (of st, when not nil, and of
// the connection): a WINDOW_UPDATE goes out once half a window is owed.
// A stream whose response has ended is owed nothing.
func (cc *ClientConn) credit(st *stream, n int64) {
	var connInc, streamInc int64
	cc.mu.Lock()
	connInc = cc.recv.Return(n, connRecvWindow)
	if st != nil && !st.recvEnd {
		streamInc = st.recv.Return(n, streamRecvWindow)
	}
	closed := cc.closed
	cc.mu.Unlock()
	if closed || (connInc == 0 && streamInc == 0) {
		return
	}
	cc.write(func() error {
		if connInc > 0 {
			if err := cc.out.Framer.WriteWindowUpdate(0, uint32(connInc)); err != nil {
				return err
			}
		}
		if streamInc > 0 && !st.closedOut {
			return cc.out.Framer.WriteWindowUpdate(st.id, uint32(streamInc))
		}
		return nil
	})
}

// end marks an end of st: its request (END_STREAM sent) when send, its
// response (END_STREAM received) otherwise. The stream is done once both
// ended.
func (cc *ClientConn) end(st *stream, send bool) {
	cc.mu.Lock()
	if send {
		st.sentEnd = true
	} else {
		st.recvEnd = true
	}
	done := st.sentEnd && st.recvEnd && cc.removeLocked(st)
	closeNow := done && cc.goingAway && len(cc.streams) == 0
	cc.mu.Unlock()
	cc.afterEnd(st, done, closeNow)
}

func (cc *ClientConn) afterEnd(st *stream, done, closeNow bool) {
	if done {
		st.ended()
	}
	if closeNow {
		cc.closeWith(errGoneAway)
	}
}

// removeLocked takes st out of the connection's streams; false when it
// was not in them (reset, or the connection closed). cc.mu is held.
func (cc *ClientConn) removeLocked(st *stream) bool {
	if cc.streams[st.id] != st {
		return false
	}
	delete(cc.streams, st.id)
	if len(cc.streams) == 0 && cc.cfg.IdleTimeout > 0 {
		cc.idleSince = time.Now()
	}
	return true
}

// stopFrames marks st as getting no more frames from this client (an
// RST_STREAM was sent or received): its request body's sender stops.
func (cc *ClientConn) stopFrames(st *stream) {
	cc.wmu.Lock()
	st.closedOut = true
	cc.wmu.Unlock()
}

// serverReset: the server reset st. A reset with NO_ERROR after the whole
// response stops the request body (RFC 9113 §8.1) and keeps the response.
func (cc *ClientConn) serverReset(st *stream, code http2.ErrCode) {
	cc.stopFrames(st)
	cc.mu.Lock()
	st.sentEnd, st.recvEnd, st.reset = true, true, true
	removed := cc.removeLocked(st)
	closeNow := removed && cc.goingAway && len(cc.streams) == 0
	cc.cond.Broadcast()
	cc.mu.Unlock()
	// The body's first error stays: io.EOF for a whole response.
	st.fail(&ResetError{Code: code})
	cc.afterEnd(st, removed, closeNow)
}

// resetStream resets st with code (RST_STREAM, unless it has ended) and
// fails it with err.
func (cc *ClientConn) resetStream(st *stream, code http2.ErrCode, err error) {
	cc.mu.Lock()
	st.reset = true
	removed := cc.removeLocked(st)
	open := removed && !(st.sentEnd && st.recvEnd)
	st.sentEnd, st.recvEnd = true, true
	closeNow := removed && cc.goingAway && len(cc.streams) == 0
	cc.cond.Broadcast()
	cc.mu.Unlock()
	cc.write(func() error {
		if st.closedOut {
			return nil
		}
		st.closedOut = true
		if !open {
			return nil
		}
		return cc.out.Framer.WriteRSTStream(st.id, code)
	})
	st.fail(err)
	cc.afterEnd(st, removed, closeNow)
}
