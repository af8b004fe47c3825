package h2server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// scriptConn is a connection whose peer sends script and then closes;
// what is written to it is dropped.
type scriptConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	closed bool
}

var fuzzAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4143}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr              { return fuzzAddr }
func (c *scriptConn) RemoteAddr() net.Addr             { return fuzzAddr }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// frames builds a client's byte stream frame by frame.
type frames struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

func newFrames() *frames {
	f := &frames{}
	f.fr = http2.NewFramer(&f.buf, nil)
	f.henc = hpack.NewEncoder(&f.hbuf)
	return f
}

// block encodes fields (name, value pairs) as a header block.
func (f *frames) block(fields ...string) []byte {
	f.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		f.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(f.hbuf.Bytes())
}

var getFields = []string{":method", "GET", ":scheme", "http", ":authority", "web.test", ":path", "/"}

// fuzzSeeds are client byte streams (after the preface) that reach the
// server's main paths: requests with and without bodies, trailers,
// CONTINUATION, resets, window updates, settings, pings, GOAWAY.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(build func(f *frames)) {
		f := newFrames()
		f.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		build(f)
		seeds = append(seeds, bytes.Clone(f.buf.Bytes()))
	}
	add(func(f *frames) {
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(getFields...), EndStream: true, EndHeaders: true})
	})
	add(func(f *frames) {
		post := []string{":method", "POST", ":scheme", "http", ":authority", "web.test", ":path", "/up", "content-length", "5", "content-type", "text/plain"}
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(post...), EndHeaders: true})
		f.fr.WriteData(1, false, []byte("hel"))
		f.fr.WriteWindowUpdate(0, 1000)
		f.fr.WriteData(1, false, []byte("lo"))
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block("grpc-status", "0"), EndStream: true, EndHeaders: true})
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(getFields...), EndStream: true, EndHeaders: true})
	})
	add(func(f *frames) {
		b := f.block(append(getFields, "x-long", string(bytes.Repeat([]byte("v"), 40)))...)
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10], EndStream: true})
		f.fr.WriteContinuation(1, false, b[10:20])
		f.fr.WriteContinuation(1, true, b[20:])
		f.fr.WritePing(false, [8]byte{1})
		f.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	add(func(f *frames) {
		f.fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 10})
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: f.block(getFields...), EndHeaders: true, Priority: http2.PriorityParam{Weight: 3}})
		f.fr.WriteWindowUpdate(5, 100)
		f.fr.WriteData(5, true, nil)
		f.fr.WriteSettingsAck()
		f.fr.WriteGoAway(5, http2.ErrCodeNo, []byte("bye"))
	})
	add(func(f *frames) {
		f.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(getFields...), EndStream: true, EndHeaders: true})
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(getFields...), EndStream: true, EndHeaders: true})
		f.fr.WriteRawFrame(0x20, 0, 1, []byte("unknown"))
	})
	return seeds
}

// FuzzServeConn serves a connection whose client sends the preface and
// then arbitrary bytes. The server must not panic, and the connection
// and its handlers must end once the client's bytes do. The seeds run
// with the other tests; fuzzing is by hand:
//
//	go test -run '^$' -fuzz FuzzServeConn -fuzztime 5m ./internal/h2server/
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{
			MaxConcurrentStreams: 8,
			MaxHeaderBytes:       4 << 10,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Trailer", "Grpc-Status")
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte("hello"))
				w.(http.Flusher).Flush()
				w.Write(bytes.Repeat([]byte("x"), 70000)) // beyond the initial window
				w.Header().Set("Grpc-Status", "0")
			}),
		}
		nc := &scriptConn{r: bytes.NewReader(append([]byte(http2.ClientPreface), data...))}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(context.Background(), nc)
		}()
		// ServeConn returns once its handlers have.
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn (or a handler) still running 10s after the client's last byte")
		}
	})
}
