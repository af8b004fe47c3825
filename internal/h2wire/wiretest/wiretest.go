// Package wiretest holds what the tests of the proxy's HTTP/2 server and
// client share: a connection whose peer's bytes are a script, and a peer's
// byte stream built frame by frame.
package wiretest

import (
	"bytes"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// ScriptConn is a connection whose peer sends prefix, waits until it has
// been written to gateWrites times, sends script and then closes; what is
// written to it is dropped.
type ScriptConn struct {
	mu         sync.Mutex
	cond       sync.Cond
	prefix     *bytes.Reader
	script     *bytes.Reader
	writes     int
	gateWrites int
	closed     bool
}

// NewScriptConn is a ScriptConn.
func NewScriptConn(prefix, script []byte, gateWrites int) *ScriptConn {
	c := &ScriptConn{prefix: bytes.NewReader(prefix), script: bytes.NewReader(script), gateWrites: gateWrites}
	c.cond.L = &c.mu
	return c
}

var addr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4143}

func (c *ScriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prefix.Len() > 0 {
		return c.prefix.Read(p)
	}
	for !c.closed && c.writes < c.gateWrites {
		c.cond.Wait()
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.script.Read(p)
}

func (c *ScriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.writes++
	c.cond.Broadcast()
	return len(p), nil
}

// Open lets the script through whatever was written.
func (c *ScriptConn) Open() {
	c.mu.Lock()
	c.gateWrites = 0
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *ScriptConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *ScriptConn) LocalAddr() net.Addr              { return addr }
func (c *ScriptConn) RemoteAddr() net.Addr             { return addr }
func (c *ScriptConn) SetDeadline(time.Time) error      { return nil }
func (c *ScriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *ScriptConn) SetWriteDeadline(time.Time) error { return nil }

// Frames builds a peer's byte stream frame by frame through Framer.
type Frames struct {
	buf    bytes.Buffer
	Framer *http2.Framer
	hbuf   bytes.Buffer
	henc   *hpack.Encoder
}

// NewFrames is an empty Frames.
func NewFrames() *Frames {
	f := &Frames{}
	f.Framer = http2.NewFramer(&f.buf, nil)
	f.henc = hpack.NewEncoder(&f.hbuf)
	return f
}

// Block encodes fields (name, value pairs) as a header block, with the
// stream's one encoder.
func (f *Frames) Block(fields ...string) []byte {
	f.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		f.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(f.hbuf.Bytes())
}

// Bytes is a copy of the stream built so far.
func (f *Frames) Bytes() []byte { return bytes.Clone(f.buf.Bytes()) }
