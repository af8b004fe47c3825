package h2client

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// scriptConn is a connection to a server that sends its SETTINGS, waits
// until the client has written gateWrites times (the preface, then the
// requests' HEADERS), then sends script and closes; what the client
// writes is dropped.
type scriptConn struct {
	mu         sync.Mutex
	cond       sync.Cond
	settings   *bytes.Reader
	script     *bytes.Reader
	writes     int
	gateWrites int
	closed     bool
}

func newScriptConn(script []byte, gateWrites int) *scriptConn {
	var b bytes.Buffer
	http2.NewFramer(&b, nil).WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
	c := &scriptConn{settings: bytes.NewReader(b.Bytes()), script: bytes.NewReader(script), gateWrites: gateWrites}
	c.cond.L = &c.mu
	return c
}

var fuzzAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4143}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settings.Len() > 0 {
		return c.settings.Read(p)
	}
	for !c.closed && c.writes < c.gateWrites {
		c.cond.Wait()
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.script.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.writes++
	c.cond.Broadcast()
	return len(p), nil
}

// open lets the script through whatever the client wrote.
func (c *scriptConn) open() {
	c.mu.Lock()
	c.gateWrites = 0
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr              { return fuzzAddr }
func (c *scriptConn) RemoteAddr() net.Addr             { return fuzzAddr }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// serverFrames builds a server's byte stream frame by frame.
type serverFrames struct {
	buf  bytes.Buffer
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

func (f *serverFrames) block(fields ...string) []byte {
	f.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		f.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(f.hbuf.Bytes())
}

// clientFuzzSeeds are server byte streams (after its SETTINGS) that
// answer the fuzzed requests (streams 1 and 3) along the client's main
// paths: bodies, trailers, CONTINUATION, 1xx, resets, window updates,
// settings, pings, GOAWAY.
func clientFuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(build func(f *serverFrames)) {
		f := &serverFrames{}
		f.fr = http2.NewFramer(&f.buf, nil)
		f.henc = hpack.NewEncoder(&f.hbuf)
		f.fr.WriteSettingsAck()
		build(f)
		seeds = append(seeds, bytes.Clone(f.buf.Bytes()))
	}
	add(func(f *serverFrames) {
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":status", "200", "content-length", "5"), EndHeaders: true})
		f.fr.WriteData(1, true, []byte("hello"))
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(":status", "204"), EndStream: true, EndHeaders: true})
	})
	add(func(f *serverFrames) {
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(":status", "100"), EndHeaders: true})
		f.fr.WriteWindowUpdate(0, 1000)
		f.fr.WriteWindowUpdate(3, 1000)
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
		f.fr.WriteData(3, false, []byte("abc"))
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.block("grpc-status", "0"), EndStream: true, EndHeaders: true})
		f.fr.WriteRSTStream(1, http2.ErrCodeRefusedStream)
	})
	add(func(f *serverFrames) {
		b := f.block(":status", "200", "x-long", strings.Repeat("v", 40))
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:8]})
		f.fr.WriteContinuation(1, false, b[8:16])
		f.fr.WriteContinuation(1, true, b[16:])
		f.fr.WritePing(false, [8]byte{1})
		f.fr.WriteData(1, false, bytes.Repeat([]byte("x"), 100))
		f.fr.WriteRSTStream(1, http2.ErrCodeNo)
		f.fr.WriteGoAway(1, http2.ErrCodeNo, []byte("bye"))
	})
	add(func(f *serverFrames) {
		f.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1},
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":status", "200"), EndStream: true, EndHeaders: true})
		f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.block(":status", "200"), EndStream: true, EndHeaders: true})
		f.fr.WriteRawFrame(0x20, 0, 3, []byte("unknown"))
		f.fr.WriteData(3, true, []byte("x"))
	})
	return seeds
}

// FuzzClientConn runs a GET and a POST on a connection whose server
// answers with arbitrary bytes. The client must not panic, and every
// request must end (with its response read or an error) once the server's
// bytes do. The seeds run with the other tests; fuzzing is by hand:
//
//	go test -run '^$' -fuzz FuzzClientConn -fuzztime 5m ./internal/h2client/
func FuzzClientConn(f *testing.F) {
	for _, s := range clientFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The gate: the preface's write, then each request's HEADERS.
		nc := newScriptConn(data, 3)
		cc, err := New(nc, Config{MaxHeaderBytes: 4 << 10, PingAfter: time.Hour, IdleTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		exchange := func(method string, body io.Reader) {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, method, "http://web.test/", body)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := cc.RoundTrip(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		wg.Add(2)
		go exchange(http.MethodGet, nil)
		go exchange(http.MethodPost, strings.NewReader("hello"))
		// Should a request not get its HEADERS out (the gate counts
		// writes), the script goes anyway.
		time.AfterFunc(time.Second, nc.open)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a request still running 10s after the server's last byte")
		}
	})
}
