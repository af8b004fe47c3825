// Package detect decides, from a connection's first bytes, which protocol
// it speaks: HTTP/1.x, HTTP/2 with prior knowledge (h2c, gRPC), TLS (whose
// SNI it records), or something else, which the proxy forwards as opaque TCP.
package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Protocol is what a connection's first bytes say it speaks.
type Protocol int

const (
	Opaque Protocol = iota // anything else: forward bytes as TCP
	HTTP1                  // an HTTP/1.x request line
	HTTP2                  // the HTTP/2 prior-knowledge preface
	TLS                    // a TLS ClientHello
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "h2"
	case TLS:
		return "tls"
	}
	return "opaque"
}

// h2Preface starts every HTTP/2 connection with prior knowledge.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

const (
	maxMethod      = 32      // longest request method accepted as HTTP/1
	maxRequestLine = 8 << 10 // past this with no CRLF, let the HTTP server answer 414
	maxPeek        = 16 << 10
)

// Classify decides from the bytes read so far. done=false means more bytes
// are needed. It never panics.
func Classify(b []byte) (p Protocol, done bool) {
	if len(b) == 0 {
		return Opaque, false
	}
	if b[0] == 0x16 { // TLS handshake record
		if len(b) < 3 {
			return Opaque, false
		}
		if b[1] == 0x03 {
			return TLS, true
		}
		return Opaque, true
	}
	if n := min(len(b), len(h2Preface)); bytes.Equal(b[:n], h2Preface[:n]) {
		if n == len(h2Preface) {
			return HTTP2, true
		}
		return Opaque, false
	}
	return classifyHTTP1(b)
}

// classifyHTTP1 recognises "METHOD SP target SP HTTP/1.x CRLF".
func classifyHTTP1(b []byte) (Protocol, bool) {
	sp := bytes.IndexByte(b, ' ')
	method := b
	if sp >= 0 {
		method = b[:sp]
	}
	for _, c := range method {
		if !isTokenChar(c) {
			return Opaque, true
		}
	}
	switch {
	case len(method) > maxMethod:
		return Opaque, true
	case sp < 0:
		return Opaque, false
	case sp == 0:
		return Opaque, true
	}
	rest := b[sp+1:]
	eol := bytes.IndexByte(rest, '\n')
	if eol < 0 {
		if len(b) >= maxRequestLine {
			return HTTP1, true // a huge target: the HTTP server answers 414
		}
		for _, c := range rest {
			if c < 0x20 && c != '\r' && c != '\t' || c == 0x7f {
				return Opaque, true
			}
		}
		return Opaque, false
	}
	line := bytes.TrimSuffix(rest[:eol], []byte("\r"))
	i := bytes.LastIndexByte(line, ' ')
	if i <= 0 {
		return Opaque, true
	}
	if v := line[i+1:]; bytes.Equal(v, []byte("HTTP/1.1")) || bytes.Equal(v, []byte("HTTP/1.0")) {
		return HTTP1, true
	}
	return Opaque, true
}

// isTokenChar reports RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// ParseSNI extracts server_name from a TLS ClientHello record prefix.
// complete=false: more bytes needed; ok=false: not a well-formed ClientHello
// with an SNI. It never panics.
func ParseSNI(b []byte) (sni string, complete, ok bool) {
	if len(b) < 5 {
		return "", false, true
	}
	if b[0] != 0x16 || b[1] != 0x03 {
		return "", true, false
	}
	recLen := int(b[3])<<8 | int(b[4])
	if len(b) < 5+recLen {
		return "", false, true
	}
	r := reader(b[5 : 5+recLen])
	if typ, _ := r.u8(); typ != 1 { // client_hello
		return "", true, false
	}
	hsLen, ok1 := r.u24()
	if !ok1 || hsLen > len(r) {
		// A ClientHello split over several records is rare; treat as no SNI.
		return "", true, false
	}
	r = r[:hsLen]
	if !r.skip(2+32) || !r.skipVec8() || !r.skipVec16() || !r.skipVec8() {
		return "", true, false
	}
	exts, ok2 := r.vec16()
	if !ok2 {
		return "", true, false
	}
	for len(exts) > 0 {
		typ, ok3 := exts.u16()
		body, ok4 := exts.vec16()
		if !ok3 || !ok4 {
			return "", true, false
		}
		if typ != 0 { // server_name
			continue
		}
		list, ok5 := body.vec16()
		if !ok5 {
			return "", true, false
		}
		for len(list) > 0 {
			nameType, _ := list.u8()
			name, ok6 := list.vec16()
			if !ok6 {
				return "", true, false
			}
			if nameType == 0 {
				return string(name), true, true
			}
		}
	}
	return "", true, false
}

// reader is a cursor over TLS wire structures.
type reader []byte

func (r *reader) u8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := int((*r)[0])
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

func (r *reader) u24() (int, bool) {
	if len(*r) < 3 {
		return 0, false
	}
	v := int((*r)[0])<<16 | int((*r)[1])<<8 | int((*r)[2])
	*r = (*r)[3:]
	return v, true
}

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) skipVec8() bool {
	n, ok := r.u8()
	return ok && r.skip(n)
}

func (r *reader) skipVec16() bool {
	_, ok := r.vec16()
	return ok
}

func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

// Result of detecting a connection.
type Result struct {
	Protocol Protocol
	SNI      string // for TLS, when present
	TimedOut bool   // detection timed out; Protocol is Opaque
}

// Detect reads from c until Classify is decisive, the peek buffer fills, EOF,
// or timeout elapses (then Opaque with TimedOut). The returned Conn replays
// every byte read. The read deadline is cleared before returning. An error is
// returned only when the connection failed or closed before any byte arrived.
func Detect(c net.Conn, timeout time.Duration) (Result, *Conn, error) {
	return detectWith(c, timeout, Classify)
}

// DetectTLS is Detect for a port whose protocol is declared (a Server's
// proxyProtocol): it only tells a TLS ClientHello (and its SNI) apart
// from anything else, deciding on the first byte, so a client that sends
// a request slowly is never mistaken for opaque TCP. A silent client
// gives Opaque with TimedOut after timeout.
func DetectTLS(c net.Conn, timeout time.Duration) (Result, *Conn, error) {
	return detectWith(c, timeout, classifyTLS)
}

// classifyTLS decides TLS or not from the first byte (then, for TLS, as
// Classify).
func classifyTLS(b []byte) (Protocol, bool) {
	switch {
	case len(b) == 0:
		return Opaque, false
	case b[0] != 0x16:
		return Opaque, true
	}
	return Classify(b)
}

func detectWith(c net.Conn, timeout time.Duration, classify func([]byte) (Protocol, bool)) (Result, *Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Result{}, nil, fmt.Errorf("detect: setting deadline: %w", err)
	}
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 1024)
	var res Result
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		p, done := classify(buf)
		if done && p == TLS {
			sni, complete, ok := ParseSNI(buf)
			if complete || !ok {
				res.SNI = sni
				done = true
			} else {
				done = false
			}
		}
		if done {
			res.Protocol = p
			return res, &Conn{Conn: c, buf: buf}, nil
		}
		if len(buf) >= maxPeek {
			if p == TLS {
				res.Protocol = TLS
			}
			return res, &Conn{Conn: c, buf: buf}, nil
		}
		if err != nil {
			if len(buf) == 0 && !isTimeout(err) {
				return Result{}, nil, fmt.Errorf("detect: %w", err)
			}
			res.TimedOut = isTimeout(err)
			if p == TLS {
				res.Protocol = TLS
			}
			return res, &Conn{Conn: c, buf: buf, err: nonTimeout(err)}, nil
		}
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func nonTimeout(err error) error {
	if isTimeout(err) {
		return nil
	}
	return err
}

// Conn is a net.Conn that first yields the bytes read during detection.
type Conn struct {
	net.Conn
	buf []byte
	err error // a read error met during detection, returned after buf
}

// Read drains the peeked bytes, then reads from the connection.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

// Peeked returns the buffered bytes not yet consumed by Read.
func (c *Conn) Peeked() []byte { return c.buf }

// Underlying returns the wrapped connection.
func (c *Conn) Underlying() net.Conn { return c.Conn }

var _ io.Reader = (*Conn)(nil)
