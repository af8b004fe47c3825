package h2client

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawServer is the server side of one connection, frame by frame.
type rawServer struct {
	t    *testing.T
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

// serveRaw accepts one connection, reads the client preface, sends
// SETTINGS, and runs script on it.
func serveRaw(t *testing.T, script func(s *rawServer)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
			t.Error(err)
			return
		}
		s := &rawServer{t: t, fr: http2.NewFramer(c, c)}
		s.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		s.henc = hpack.NewEncoder(&s.hbuf)
		s.fr.WriteSettings()
		script(s)
	}()
	return l.Addr().String()
}

// next is the next frame other than SETTINGS, WINDOW_UPDATE and PING.
func (s *rawServer) next() http2.Frame {
	for {
		f, err := s.fr.ReadFrame()
		if err != nil {
			return nil
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				s.fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame, *http2.PingFrame:
		default:
			return f
		}
	}
}

// headers is the next HEADERS frame's stream.
func (s *rawServer) headers() uint32 {
	for {
		f := s.next()
		if f == nil {
			s.t.Error("connection ended before a request")
			return 0
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			return h.StreamID
		}
	}
}

// respond sends a header block of fields (name, value pairs).
func (s *rawServer) respond(id uint32, end bool, fields ...string) {
	s.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		s.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: s.hbuf.Bytes(), EndHeaders: true, EndStream: end})
}

// TestRefusedAndGoAway: a REFUSED_STREAM reset, and a stream above the
// last one a GOAWAY names, fail with errors matching ErrRefused; the
// stream under it finishes, and the connection then closes.
func TestRefusedAndGoAway(t *testing.T) {
	addr := serveRaw(t, func(s *rawServer) {
		s.fr.WriteRSTStream(s.headers(), http2.ErrCodeRefusedStream)
		a := s.headers()
		s.headers() // the second request: above the GOAWAY's last stream
		s.fr.WriteGoAway(a, http2.ErrCodeNo, nil)
		s.respond(a, true, ":status", "200")
		s.next() // the client's end
	})
	cc := connect(t, addr, Config{})
	if _, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil)); !errors.Is(err, ErrRefused) {
		t.Fatalf("refused stream: %v, want ErrRefused", err)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
			results <- result{resp, err}
		}()
	}
	var ok, refused int
	for range 2 {
		r := <-results
		switch {
		case r.err == nil && r.resp.StatusCode == 200:
			r.resp.Body.Close()
			ok++
		case errors.Is(r.err, ErrRefused):
			refused++
		default:
			t.Errorf("a request got %v", r.err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Errorf("%d answered, %d refused; want 1 and 1", ok, refused)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cc.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if cc.Err() == nil || cc.Available() != 0 {
		t.Errorf("after GOAWAY and its last stream: Err %v, Available %d", cc.Err(), cc.Available())
	}
	if _, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil)); !errors.Is(err, ErrUnusable) {
		t.Errorf("a request after the connection closed: %v, want ErrUnusable", err)
	}
}

// TestPingTimeout: a server that stops answering is found out by a PING
// and its connection closed, failing the request in flight.
func TestPingTimeout(t *testing.T) {
	addr := serveRaw(t, func(s *rawServer) {
		s.headers()
		time.Sleep(3 * time.Second) // reads nothing, answers nothing
	})
	cc := connect(t, addr, Config{PingAfter: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
	if err == nil || !strings.Contains(err.Error(), "PING") {
		t.Errorf("request on a silent server: %v, want a PING timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("found out after %v", d)
	}
}

// TestPingKeepsAlive: a server that answers PINGs keeps its idle
// connection.
func TestPingKeepsAlive(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), nil)
	cc := connect(t, addr, Config{PingAfter: 20 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
	time.Sleep(400 * time.Millisecond)
	if err := cc.Err(); err != nil {
		t.Fatalf("idle connection with PINGs answered: %v", err)
	}
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestResetNoErrorAfterResponse: RST_STREAM(NO_ERROR) after a whole
// response stops the request body (RFC 9113 §8.1) and keeps the response.
func TestResetNoErrorAfterResponse(t *testing.T) {
	addr := serveRaw(t, func(s *rawServer) {
		id := s.headers()
		s.respond(id, false, ":status", "200")
		s.fr.WriteData(id, true, []byte("done"))
		s.fr.WriteRSTStream(id, http2.ErrCodeNo)
		for s.next() != nil {
		}
	})
	cc := connect(t, addr, Config{})
	pr, pw := io.Pipe()
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "POST", addr, pr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "done" {
		t.Errorf("body %q, %v; want the whole response", b, err)
	}
	// The request body is closed: a write to it fails.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := pw.Write([]byte("more")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request body is still read after the server's reset")
		}
	}
}

// TestMalformedResponses: each fails its request (or its body), not the
// connection.
func TestMalformedResponses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(s *rawServer, id uint32)
		inBody bool // the error comes from reading the body
	}{
		{"no status", func(s *rawServer, id uint32) { s.respond(id, true, "x", "y") }, false},
		{"bad status", func(s *rawServer, id uint32) { s.respond(id, true, ":status", "2000") }, false},
		{"body shorter than Content-Length", func(s *rawServer, id uint32) {
			s.respond(id, false, ":status", "200", "content-length", "10")
			s.fr.WriteData(id, true, []byte("short"))
		}, true},
		{"body longer than Content-Length", func(s *rawServer, id uint32) {
			s.respond(id, false, ":status", "200", "content-length", "2")
			s.fr.WriteData(id, true, []byte("too long"))
		}, true},
		{"trailers without END_STREAM", func(s *rawServer, id uint32) {
			s.respond(id, false, ":status", "200")
			s.respond(id, false, "grpc-status", "0")
		}, true},
		{"two content-lengths", func(s *rawServer, id uint32) {
			s.respond(id, false, ":status", "200", "content-length", "5", "content-length", "100")
			s.fr.WriteData(id, true, []byte("hello"))
		}, false},
		{"reset", func(s *rawServer, id uint32) {
			s.respond(id, false, ":status", "200")
			s.fr.WriteRSTStream(id, http2.ErrCodeInternal)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveRaw(t, func(s *rawServer) {
				tc.answer(s, s.headers())
				id := s.headers()
				s.respond(id, true, ":status", "204")
				for s.next() != nil {
				}
			})
			cc := connect(t, addr, Config{})
			resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
			if tc.inBody {
				if err != nil {
					t.Fatalf("round trip: %v", err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			resp, err = cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
			if err != nil {
				t.Fatalf("the next request on the connection: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 204 {
				t.Errorf("next request: status %d", resp.StatusCode)
			}
		})
	}
}

// TestSameContentLengthsCollapse: repeated equal Content-Length values
// are one.
func TestSameContentLengthsCollapse(t *testing.T) {
	addr := serveRaw(t, func(s *rawServer) {
		id := s.headers()
		s.respond(id, false, ":status", "200", "content-length", "5", "content-length", "5")
		s.fr.WriteData(id, true, []byte("hello"))
		for s.next() != nil {
		}
	})
	cc := connect(t, addr, Config{})
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "hello" || resp.ContentLength != 5 || len(resp.Header["Content-Length"]) != 1 {
		t.Errorf("body %q (%v), ContentLength %d, header %q", b, err, resp.ContentLength, resp.Header["Content-Length"])
	}
}

// TestLoweredStreamLimit: slots reserved before the server's SETTINGS
// lowered its limit do not open streams over it: the request gets
// ErrUnusable, which the pool sends elsewhere.
func TestLoweredStreamLimit(t *testing.T) {
	lowered := make(chan struct{})
	addr := serveRaw(t, func(s *rawServer) {
		<-lowered
		s.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
		id := s.headers()
		s.respond(id, true, ":status", "204")
		for s.next() != nil {
		}
	})
	cc := connect(t, addr, Config{})
	for range 2 {
		if err := cc.Reserve(); err != nil {
			t.Fatal(err)
		}
	}
	close(lowered)
	deadline := time.Now().Add(5 * time.Second)
	for cc.Available() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	pr, _ := io.Pipe() // a body that never ends keeps the first stream open
	first, err := cc.RoundTrip(newReq(t, testCtx(t), "POST", addr, pr))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	if _, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil)); !errors.Is(err, ErrUnusable) {
		t.Errorf("a second stream over the lowered limit of 1: %v, want ErrUnusable", err)
	}
}

// TestEarlyResponseStopsTheRequestBody: a response that ends with its
// header while the request body is still being sent; closing its body
// resets the stream (the server sees RST_STREAM CANCEL) and stops the
// request body.
func TestEarlyResponseStopsTheRequestBody(t *testing.T) {
	reset := make(chan http2.ErrCode, 1)
	addr := serveRaw(t, func(s *rawServer) {
		id := s.headers()
		s.respond(id, true, ":status", "413")
		for {
			f := s.next()
			if f == nil {
				return
			}
			if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == id {
				reset <- r.ErrCode
			}
		}
	})
	cc := connect(t, addr, Config{})
	pr, pw := io.Pipe()
	go pw.Write([]byte("part of a large upload"))
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "POST", addr, pr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 413 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 0 {
		t.Errorf("body %q, %v", b, err)
	}
	resp.Body.Close()
	select {
	case code := <-reset:
		if code != http2.ErrCodeCancel {
			t.Errorf("RST_STREAM %v, want CANCEL", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no RST_STREAM after the response body was closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := pw.Write([]byte("more")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request body is still read")
		}
	}
	if n := cc.InFlight(); n != 0 {
		t.Errorf("%d streams in flight", n)
	}
}

// failingConn fails its writes once failWrites is set.
type failingConn struct {
	net.Conn
	failWrites atomic.Bool
}

func (c *failingConn) Write(p []byte) (int, error) {
	if c.failWrites.Load() {
		return 0, errors.New("write failed (test)")
	}
	return c.Conn.Write(p)
}

// TestFailedWriteEndsTheConnection: a connection whose write failed takes
// no more requests at once, not once its read loop notices.
func TestFailedWriteEndsTheConnection(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fc := &failingConn{Conn: nc}
	cc, err := New(fc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	fc.failWrites.Store(true)
	if _, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil)); err == nil {
		t.Fatal("a request on a connection whose writes fail succeeded")
	}
	if cc.Err() == nil || cc.Available() != 0 {
		t.Errorf("after the failed write: Err %v, Available %d", cc.Err(), cc.Available())
	}
	if err := cc.Reserve(); !errors.Is(err, ErrUnusable) {
		t.Errorf("Reserve after the failed write: %v", err)
	}
}

// TestNoBodyStatuses: a 304 or 204 that declares a Content-Length has no
// body to wait for (RFC 9110 §6.4.1): its body is empty, not short.
func TestNoBodyStatuses(t *testing.T) {
	addr := serveRaw(t, func(s *rawServer) {
		s.respond(s.headers(), true, ":status", "304", "content-length", "1234")
		s.respond(s.headers(), true, ":status", "204", "content-length", "10")
		for s.next() != nil {
		}
	})
	cc := connect(t, addr, Config{})
	for _, want := range []int{304, 204} {
		resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || err != nil || len(b) != 0 {
			t.Errorf("status %d (want %d): body %q, %v", resp.StatusCode, want, b, err)
		}
	}
}
