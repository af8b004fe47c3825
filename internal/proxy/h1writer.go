package proxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Writer is serveH1's http.ResponseWriter (and http.Flusher). It writes
// the head as net/http's server would (chunkWriter.writeHeader: Date,
// Content-Length of a body complete when the handler returns, chunked
// otherwise, Content-Type sniffing, no body for HEAD, 1xx, 204 and 304,
// trailers after a chunked body), into the connection's buffered writer:
// the head and a small body leave in one write when the handler returns.
type h1Writer struct {
	c      *h1SrvConn
	req    *http.Request
	body   *h1SrvBody
	header http.Header

	wroteHeader bool // WriteHeader called (status final)
	committed   bool // head written to the connection's buffer
	handlerDone bool
	status      int
	cl          int64 // declared Content-Length, -1 if none
	written     int64
	chunking    bool
	closeAfter  bool
	// prefixTrailers: trailer keys (http.TrailerPrefix) were in the header
	// at WriteHeader (net/http snapshots the header then).
	prefixTrailers bool
	trailers       []string // declared in the Trailer header
	pend           []byte   // body held until the head is written
	scratch        [64]byte
	clBuf          [20]byte
}

// h1HoldBody is how much of a body of unknown length is held back before
// the head goes out chunked (net/http's bufferBeforeChunkingSize).
const h1HoldBody = 2048

// Header is the response header, made on first use: respond adopts the
// upstream response's header instead when nothing was set before.
func (w *h1Writer) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// AdoptHeader makes h the response header, so that a proxied response's
// header is passed on without a copy; false when a header was already
// started (the caller copies into it).
func (w *h1Writer) AdoptHeader(h http.Header) bool {
	if w.header != nil || w.wroteHeader {
		return false
	}
	w.header = h
	return true
}

func (w *h1Writer) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeStatusLine(code)
		for k, vv := range w.header {
			if k == "Content-Length" || k == "Transfer-Encoding" || !httpguts.ValidHeaderFieldName(k) {
				continue
			}
			for _, v := range vv {
				writeField(w.c.bw, k, v)
			}
		}
		w.c.bw.WriteString("\r\n")
		w.c.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		v, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && v >= 0 {
			w.cl = v
		} else {
			w.header.Del("Content-Length")
		}
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.prefixTrailers = true
			break
		}
	}
}

func (w *h1Writer) bodyAllowed() bool { return bodyAllowedForStatus(w.status) }

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == 204, status == 304:
		return false
	}
	return true
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.cl != -1 && w.written > w.cl {
		return 0, http.ErrContentLength
	}
	if !w.committed {
		if w.cl == -1 || w.req.Method == http.MethodHead || len(w.header["Trailer"]) > 0 || w.prefixTrailers {
			if len(w.pend)+len(p) <= h1HoldBody {
				w.pend = append(w.pend, p...)
				return len(p), nil
			}
		}
		if err := w.commit(); err != nil {
			return 0, err
		}
	}
	return w.writeBody(p)
}

// writeBody writes p after the head: a chunk, the bytes, or nothing (HEAD).
func (w *h1Writer) writeBody(p []byte) (int, error) {
	if len(p) == 0 || w.req.Method == http.MethodHead {
		return len(p), nil
	}
	bw := w.c.bw
	if w.chunking {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		if _, err := bw.WriteString("\r\n"); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return bw.Write(p)
}

// Flush sends the head and what is held of the body.
func (w *h1Writer) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		if w.commit() != nil {
			return
		}
	}
	w.c.bw.Flush()
}

// FlushError is Flush for http.ResponseController.
func (w *h1Writer) FlushError() error {
	w.Flush()
	return w.c.bw.Flush()
}

// commit writes the head, then the held body.
func (w *h1Writer) commit() error {
	w.committed = true
	p := w.pend
	w.pend = nil
	w.writeHead(p)
	_, err := w.writeBody(p)
	return err
}

// finish completes the response once the handler has returned.
func (w *h1Writer) finish() {
	w.handlerDone = true
	if w.body != nil && w.body.broken {
		w.closeAfter = true // a read of the body was cut short
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit()
	}
	if w.chunking {
		bw := w.c.bw
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.header[k] {
				writeField(bw, k, v)
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidHeaderFieldName(name) {
				for _, v := range vv {
					writeField(bw, name, v)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if w.req.Method != http.MethodHead && w.cl != -1 && w.bodyAllowed() && w.cl != w.written {
		w.closeAfter = true // a short body: the connection cannot be reused
	}
	if w.body != nil && !w.body.end() {
		w.closeAfter = true // the body was not read to its end
	}
}

// writeHead writes the status line and header, p being the body held so
// far (net/http's chunkWriter.writeHeader, for HTTP/1.1 requests).
func (w *h1Writer) writeHead(p []byte) {
	h := w.header
	isHEAD := w.req.Method == http.MethodHead
	trailers := w.prefixTrailers
	for _, v := range h["Trailer"] {
		trailers = true
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				f = http.CanonicalHeaderKey(f)
				switch f {
				case "Transfer-Encoding", "Trailer", "Content-Length":
				default:
					w.trailers = append(w.trailers, f)
				}
			}
		}
	}
	te := h.Get("Transfer-Encoding")
	hasTE := te != ""
	var setCL []byte
	if w.handlerDone && !trailers && !hasTE && w.bodyAllowed() && !hasKey(h, "Content-Length") && (!isHEAD || len(p) > 0) {
		w.cl = int64(len(p))
		setCL = strconv.AppendInt(w.clBuf[:0], w.cl, 10)
	}
	keepAlive := w.c.srv.h1.keepAlive()
	if h.Get("Connection") == "close" || !keepAlive {
		w.closeAfter = true
	}
	setConnection := ""
	// Drain an unread body to keep the connection, as net/http does, but
	// only once the handler has returned: while it runs, the body belongs
	// to the upstream request it is streaming into (a response may start
	// before the request has ended), and draining it would cut that
	// request short.
	if w.req.ContentLength != 0 && !w.closeAfter && w.body != nil && w.handlerDone {
		if done, closedEarly := w.body.discard(); !done {
			w.closeAfter = true
			if !closedEarly {
				setConnection = "close" // too large to drain
			}
		}
	}
	exclude := map[string]bool(nil)
	del := func(k string) {
		if _, ok := h[k]; ok {
			if exclude == nil {
				exclude = map[string]bool{}
			}
			exclude[k] = true
		}
	}
	hasCL := w.cl != -1
	code := w.status
	setType := ""
	if w.bodyAllowed() {
		_, haveType := h["Content-Type"]
		if h.Get("Content-Encoding") == "" && !haveType && !hasTE && len(p) > 0 {
			setType = http.DetectContentType(p)
		}
	} else {
		if code == http.StatusNotModified {
			del("Content-Type")
		}
		del("Content-Length")
		del("Transfer-Encoding")
	}
	if hasCL && hasTE && te != "identity" {
		del("Content-Length")
		hasCL = false
	}
	setTE := ""
	switch {
	case isHEAD || !w.bodyAllowed():
		del("Transfer-Encoding")
	case hasCL:
		del("Transfer-Encoding")
	case hasTE && te == "identity":
		w.closeAfter = true
		del("Transfer-Encoding")
	default:
		w.chunking = true
		setTE = "chunked"
		if hasTE && te == "chunked" {
			del("Transfer-Encoding")
		}
	}
	if w.chunking {
		del("Content-Length")
	}
	if w.closeAfter && (!keepAlive || !headerHasToken(h, "Connection", "close")) {
		del("Connection")
		setConnection = "close"
	}
	bw := w.c.bw
	w.writeStatusLine(code)
	for k, vv := range h {
		if exclude[k] || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if setType != "" {
		bw.WriteString("Content-Type: ")
		bw.WriteString(setType)
		bw.WriteString("\r\n")
	}
	if setConnection != "" {
		bw.WriteString("Connection: close\r\n")
	}
	if setTE != "" {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !hasKey(h, "Date") {
		bw.WriteString("Date: ")
		var date [len(http.TimeFormat) + 8]byte
		bw.Write(time.Now().UTC().AppendFormat(date[:0], http.TimeFormat))
		bw.WriteString("\r\n")
	}
	if setCL != nil {
		bw.WriteString("Content-Length: ")
		bw.Write(setCL)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *h1Writer) writeStatusLine(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
	if text := http.StatusText(code); text != "" {
		bw.WriteByte(' ')
		bw.WriteString(text)
	} else {
		bw.WriteString(" status code ")
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(code), 10))
	}
	bw.WriteString("\r\n")
}

// hasKey: the header has the key, even with no value (net/http's
// Header.has: a nil Date or Content-Type suppresses the default).
func hasKey(h http.Header, k string) bool {
	_, ok := h[k]
	return ok
}
