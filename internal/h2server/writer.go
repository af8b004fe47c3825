package h2server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/h2wire"
)

// writeBufSize is how much response body a stream holds before it sends
// DATA (net/http's HTTP/2 server holds 4 KiB).
const writeBufSize = 8 << 10

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}

// responseWriter is a stream's http.ResponseWriter (and http.Flusher).
// The response's HEADERS frame waits for its first DATA, a Flush, or the
// handler's return, and leaves in the same write: a small response is one
// write of HEADERS and DATA with END_STREAM (or HEADERS, DATA and
// trailers).
//
// Unlike net/http's, the header is not copied at WriteHeader: fields
// added after it that are neither trailers nor declared as such (the
// Trailer field) are sent too if the HEADERS frame has not left yet.
type responseWriter struct {
	st        *stream
	header    http.Header
	status    int
	wroteHead bool    // WriteHeader called with a final status
	sentHead  bool    // HEADERS sent (written under c.wmu)
	ended     bool    // END_STREAM sent
	noBody    bool    // HEAD, 204, 304: body writes are dropped
	buf       *[]byte // body not yet sent
	err       error   // a failed write; later writes return it
}

var _ http.Flusher = (*responseWriter)(nil)

// Header is the response header, made on first use.
func (w *responseWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// AdoptHeader makes h the response header, so that a proxied response's
// header is passed on without a copy; false when a header was started
// already (the caller copies into it).
func (w *responseWriter) AdoptHeader(h http.Header) bool {
	if w.header != nil || w.wroteHead {
		return false
	}
	w.header = h
	return true
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHead {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: sent now, with the header as it is (RFC 8297),
		// without the body's framing fields.
		w.writeInformational(code)
		return
	}
	w.wroteHead = true
	w.status = code
	w.noBody = w.st.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

func (w *responseWriter) writeInformational(code int) {
	if w.err != nil || w.sentHead {
		return
	}
	c := w.st.c
	w.err = c.write(func() error {
		if w.st.wroteReset {
			return errStreamReset
		}
		c.out.Block.Reset()
		w.encodeHeader(code, false, -1)
		return c.writeHeaderBlock(w.st.id, false)
	})
}

// writeContinue sends 100 Continue when the request body is first read
// (Expect: 100-continue: the client waits for it to send the body), unless
// the response's HEADERS left already. The body may be read on another
// goroutine than the handler's (an upstream's transport): sentHead is
// written under c.wmu only, and read here under it.
func (w *responseWriter) writeContinue() {
	c := w.st.c
	c.write(func() error {
		if w.st.wroteReset || w.sentHead {
			return nil
		}
		c.out.Block.Reset()
		c.out.Enc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
		return c.writeHeaderBlock(w.st.id, false)
	})
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.st.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.buf == nil {
		w.buf = writeBufs.Get().(*[]byte)
	}
	b := *w.buf
	if len(b)+len(p) <= cap(b) {
		*w.buf = append(b, p...)
		return len(p), nil
	}
	// Over the buffer: what it holds and p go out now.
	if err := w.send(b, p, false); err != nil {
		return 0, err
	}
	*w.buf = b[:0]
	return len(p), nil
}

// Flush sends the header and the body written so far.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is Flush, with the error of a failed write.
func (w *responseWriter) FlushError() error {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	var b []byte
	if w.buf != nil {
		b = *w.buf
	}
	if w.sentHead && len(b) == 0 {
		return nil
	}
	if err := w.send(b, nil, false); err != nil {
		return err
	}
	if w.buf != nil {
		*w.buf = b[:0]
	}
	return nil
}

// finish ends the response after the handler returned: the header (with
// a Content-Length when the whole body is known), the rest of the body,
// and END_STREAM on the last DATA frame or the trailers.
func (w *responseWriter) finish() {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil || w.ended {
		return
	}
	var b []byte
	if w.buf != nil {
		b = *w.buf
	}
	w.send(b, nil, true)
}

// release returns the stream's buffer (the handler has returned).
func (w *responseWriter) release() {
	if w.buf != nil {
		*w.buf = (*w.buf)[:0]
		writeBufs.Put(w.buf)
		w.buf = nil
	}
}

// trailerKeys are the response's trailers when the handler has returned:
// the fields declared in the header's Trailer field, and those set with
// http.TrailerPrefix, each with a value.
func (w *responseWriter) trailerKeys() []string {
	var keys []string
	add := func(k string) {
		k = http.CanonicalHeaderKey(k)
		switch k {
		case "Transfer-Encoding", "Content-Length", "Trailer":
			return
		}
		for _, have := range keys {
			if have == k {
				return
			}
		}
		keys = append(keys, k)
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			k = k[len(http.TrailerPrefix):]
			w.header[http.CanonicalHeaderKey(k)] = vv
			add(k)
		}
	}
	for _, v := range w.header["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				add(k)
			}
		}
	}
	n := 0
	for _, k := range keys {
		if len(w.header[k]) > 0 {
			keys[n] = k
			n++
		}
	}
	return keys[:n]
}

// send writes the header if it has not left, then b and p as DATA within
// the client's windows (waiting for credit as needed), and, when end, the
// trailers or END_STREAM.
func (w *responseWriter) send(b, p []byte, end bool) error {
	st, c := w.st, w.st.c
	var trailers []string
	if end && !w.noBody {
		trailers = w.trailerKeys()
	}
	contentLength := int64(-1)
	if end && !w.sentHead && !w.noBody {
		if _, ok := w.header["Content-Length"]; !ok {
			contentLength = int64(len(b) + len(p))
		}
	}
	if w.noBody {
		b, p = nil, nil
	}
	for {
		// Take what the windows allow of b, then of p (without waiting
		// while the header has not left: it goes first, alone).
		want := len(b) + len(p)
		n := 0
		if want > 0 {
			var err error
			n, err = c.take(st, want, w.sentHead)
			if err != nil {
				w.err = err
				return err
			}
		}
		last := end && n == want
		unsent := false
		err := c.write(func() error {
			if st.wroteReset {
				unsent = true
				return errStreamReset
			}
			if !w.sentHead {
				c.out.Block.Reset()
				w.encodeHeader(w.status, true, contentLength)
				headEnds := last && want == 0 && len(trailers) == 0
				if err := c.writeHeaderBlock(st.id, headEnds); err != nil {
					return err
				}
				w.sentHead = true
				if headEnds {
					w.ended = true
					return nil
				}
			}
			max := c.frameSize()
			rest := n
			for rest > 0 {
				chunk := b
				if len(chunk) == 0 {
					chunk = p
				}
				chunk = chunk[:min(len(chunk), rest, max)]
				rest -= len(chunk)
				if len(b) > 0 {
					b = b[len(chunk):]
				} else {
					p = p[len(chunk):]
				}
				endData := last && rest == 0 && len(trailers) == 0
				if err := c.out.Framer.WriteData(st.id, endData, chunk); err != nil {
					return err
				}
				if endData {
					w.ended = true
				}
			}
			if last && !w.ended {
				if len(trailers) == 0 {
					w.ended = true
					return c.out.Framer.WriteData(st.id, true, nil)
				}
				c.out.Block.Reset()
				for _, k := range trailers {
					w.encodeField(strings.ToLower(k), w.header[k])
				}
				w.ended = true
				return c.writeHeaderBlock(st.id, true)
			}
			return nil
		})
		if err != nil {
			if unsent {
				// The client never got this credit's bytes: the
				// connection's window is still theirs.
				c.refund(n)
			}
			w.err = err
			return err
		}
		if last || (!end && len(b) == 0 && len(p) == 0) {
			return nil
		}
	}
}

func (c *conn) frameSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxFrame
}

// refund gives back connection-level send credit taken for DATA that was
// not sent.
func (c *conn) refund(n int) {
	if n == 0 {
		return
	}
	c.mu.Lock()
	c.sendWindow += int64(n)
	c.cond.Broadcast()
	c.mu.Unlock()
}

// take reserves up to want bytes of DATA credit from the stream's and the
// connection's windows, waiting for credit when block (returning 0
// otherwise).
func (c *conn) take(st *stream, want int, block bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case st.reset:
			return 0, errStreamReset
		case c.closed:
			return 0, errConnClosed
		}
		n := min(int64(want), st.sendWindow, c.sendWindow)
		if n > 0 {
			st.sendWindow -= n
			c.sendWindow -= n
			return int(n), nil
		}
		if !block {
			return 0, nil
		}
		c.cond.Wait()
	}
}

// encodeHeader encodes the response header block into c.out.Block: :status,
// then the fields (trailers, and the body's framing for an informational
// response, left out). c.wmu is held.
func (w *responseWriter) encodeHeader(status int, final bool, contentLength int64) {
	c := w.st.c
	c.out.Enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	var declared []string
	if final {
		declared = w.header["Trailer"]
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) || (len(declared) > 0 && isDeclared(declared, k)) {
			continue
		}
		if !final && (k == "Content-Length" || k == "Transfer-Encoding") {
			continue
		}
		lk, ok := h2wire.LowerName(k)
		if !ok || h2wire.ConnectionSpecific(lk) {
			continue // not a token, or not in HTTP/2 (RFC 9113 §8.2.2)
		}
		w.encodeField(lk, vv)
	}
	if contentLength >= 0 {
		c.out.Enc.WriteField(hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(contentLength, 10)})
	}
}

func (w *responseWriter) encodeField(name string, vv []string) {
	for _, v := range vv {
		if httpguts.ValidHeaderFieldValue(v) {
			w.st.c.out.Enc.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
}

// isDeclared reports whether k is named in the Trailer field's values.
func isDeclared(declared []string, k string) bool {
	for _, v := range declared {
		for d := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(d), k) {
				return true
			}
		}
	}
	return false
}

// statusText is a status code's decimal form.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 404:
		return "404"
	case 500:
		return "500"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
