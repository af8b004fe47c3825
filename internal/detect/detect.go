// Package detect is a scratch stand-in.
package detect

import (
	"bytes"
	"net"
	"time"
)

type Protocol int

const (
	Opaque Protocol = iota
	HTTP1
	HTTP2
	TLS
)

type Result struct {
	Protocol Protocol
	SNI      string
	TimedOut bool
}
type Conn struct {
	net.Conn
	buf []byte
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
func (c *Conn) Peeked() []byte       { return c.buf }
func (c *Conn) Underlying() net.Conn { return c.Conn }
func Detect(c net.Conn, timeout time.Duration) (Result, *Conn, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 4096)
	for {
		tmp := make([]byte, 4096)
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if bytes.HasPrefix(buf, []byte("PRI * HTTP/2.0")) {
			return Result{Protocol: HTTP2}, &Conn{c, buf}, nil
		}
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			if bytes.Contains(buf[:i], []byte("HTTP/1.")) {
				return Result{Protocol: HTTP1}, &Conn{c, buf}, nil
			}
			return Result{}, &Conn{c, buf}, nil
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return Result{TimedOut: true}, &Conn{c, buf}, nil
			}
			if len(buf) == 0 {
				return Result{}, nil, err
			}
			return Result{}, &Conn{c, buf}, nil
		}
		if len(buf) > 0 && buf[0] < 'A' {
			return Result{}, &Conn{c, buf}, nil
		}
	}
}
