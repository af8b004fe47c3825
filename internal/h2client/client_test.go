package h2client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h2cServer serves h with net/http's HTTP/2 server (prior knowledge, no
// TLS): an implementation independent of this package's.
func h2cServer(t *testing.T, h http.Handler, conf *http.HTTP2Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols), HTTP2: conf}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func connect(t *testing.T, addr string, cfg Config) *ClientConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func newReq(t *testing.T, ctx context.Context, method, addr string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/path?q=1", body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRoundTrip: requests as net/http's HTTP/2 server sees them, and its
// responses as the client returns them: fields, bodies of 3 MiB both ways
// (over the windows of both sides), trailers both ways, HEAD and 204.
func TestRoundTrip(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Trailer", "X-Sum")
			w.Header().Set("X-Seen", fmt.Sprintf("%s %s %s host=%s ua=%q te=%q cl=%d x=%q", r.Proto, r.Method, r.URL.RequestURI(), r.Host, r.UserAgent(), r.Header.Get("Te"), r.ContentLength, r.Header.Values("X-Multi")))
			n, _ := io.Copy(w, r.Body)
			w.Header().Set("X-Sum", fmt.Sprint(n))
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
			w.Header().Set(http.TrailerPrefix+"X-Req-Trailer", r.Trailer.Get("X-Checksum"))
		case "/head":
			w.Header().Set("Content-Length", "1234")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		}
	}), nil)
	cc := connect(t, addr, Config{})
	ctx := testCtx(t)

	payload := make([]byte, 3<<20)
	rand.Read(payload)
	req := newReq(t, ctx, "POST", addr, bytes.NewReader(payload))
	req.URL.Path = "/echo"
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.Header.Set("Te", "trailers")
	req.Header.Set("Connection", "keep-alive") // not carried by HTTP/2
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("echoed %d bytes, not the %d sent", len(got), len(payload))
	}
	wantSeen := fmt.Sprintf(`HTTP/2.0 POST /echo?q=1 host=%s ua="Go-http-client/2.0" te="trailers" cl=%d x=["a" "b"]`, addr, len(payload))
	if s := resp.Header.Get("X-Seen"); s != wantSeen {
		t.Errorf("server saw %s\nwant %s", s, wantSeen)
	}
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 || resp.Status != "200 OK" {
		t.Errorf("response %s %d %q", resp.Proto, resp.StatusCode, resp.Status)
	}
	if got, want := resp.Trailer.Get("X-Sum"), fmt.Sprint(len(payload)); got != want {
		t.Errorf("declared trailer X-Sum = %q, want %q (trailer %v)", got, want, resp.Trailer)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("undeclared trailer Grpc-Status = %q, want 0", got)
	}

	// A request with trailers.
	pr, pw := io.Pipe()
	req = newReq(t, ctx, "PUT", addr, pr)
	req.URL.Path = "/echo"
	req.Trailer = http.Header{"X-Checksum": nil}
	go func() {
		pw.Write([]byte("hello"))
		req.Trailer.Set("X-Checksum", "abc")
		pw.Close()
	}()
	resp, err = cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("X-Req-Trailer"); got != "abc" {
		t.Errorf("server saw request trailer %q, want abc", got)
	}

	for _, tc := range []struct {
		method, path string
		status       int
		cl           int64
	}{
		{"HEAD", "/head", 200, 1234},
		{"GET", "/nocontent", 204, 0},
	} {
		req := newReq(t, ctx, tc.method, addr, nil)
		req.URL.Path = tc.path
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 0 || resp.StatusCode != tc.status || resp.ContentLength != tc.cl {
			t.Errorf("%s %s: status %d, Content-Length %d, body %q (%v); want %d, %d, empty", tc.method, tc.path, resp.StatusCode, resp.ContentLength, b, err, tc.status, tc.cl)
		}
	}
	if n := cc.InFlight(); n != 0 {
		t.Errorf("%d streams in flight after every response was read", n)
	}
}

// TestConcurrentStreams: many requests at once share the connection, each
// getting its own response.
func TestConcurrentStreams(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		io.WriteString(w, r.URL.Query().Get("i"))
	}), nil)
	cc := connect(t, addr, Config{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			req := newReq(t, ctx, "GET", addr, nil)
			req.URL.RawQuery = fmt.Sprintf("i=%d", i)
			resp, err := cc.RoundTrip(req)
			if err != nil {
				if errors.Is(err, ErrUnusable) {
					return // over the server's stream limit: the pool's to handle
				}
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != fmt.Sprint(i) {
				t.Errorf("request %d got %q", i, b)
			}
		})
	}
	wg.Wait()
}

// TestFullDuplex: the request body streams while the response streams
// back, chunk by chunk.
func TestFullDuplex(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(bytes.ToUpper(buf[:n]))
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}), nil)
	cc := connect(t, addr, Config{})
	pr, pw := io.Pipe()
	// The server answers once it has read something.
	go pw.Write([]byte("one"))
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "POST", addr, pr))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for i, word := range []string{"one", "two", "three"} {
		if i > 0 {
			pw.Write([]byte(word))
		}
		n, err := io.ReadAtLeast(resp.Body, buf, len(word))
		if err != nil || string(buf[:n]) != strings.ToUpper(word) {
			t.Fatalf("echo of %q: %q, %v", word, buf[:n], err)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Errorf("after the request ended: %q, %v", rest, err)
	}
	resp.Body.Close()
}

// TestCancelResetsStream: a request whose context ends fails with the
// context's error, and the server's handler sees its stream reset.
func TestCancelResetsStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		// send sends req, canceled through ctx: its own context (RoundTrip)
		// or one given apart (Send, the request's own never canceled).
		send func(cc *ClientConn, ctx context.Context, req *http.Request) (*http.Response, error)
	}{
		{"RoundTrip", func(cc *ClientConn, ctx context.Context, req *http.Request) (*http.Response, error) {
			return cc.RoundTrip(req.WithContext(ctx))
		}},
		{"Send", func(cc *ClientConn, ctx context.Context, req *http.Request) (*http.Response, error) {
			return cc.Send(ctx, req)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handlerDone := make(chan struct{})
			addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/wait" {
					<-r.Context().Done()
					close(handlerDone)
				}
			}), nil)
			cc := connect(t, addr, Config{})
			ctx, cancel := context.WithCancel(testCtx(t))
			time.AfterFunc(100*time.Millisecond, cancel)
			req := newReq(t, testCtx(t), "GET", addr, nil)
			req.URL.Path = "/wait"
			_, err := tc.send(cc, ctx, req)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("round trip: %v, want context.Canceled", err)
			}
			select {
			case <-handlerDone:
			case <-time.After(5 * time.Second):
				t.Fatal("the server's handler did not see the stream reset")
			}
			// The connection carries on.
			resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
			if err != nil {
				t.Fatalf("after a canceled request: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestBodyCloseResetsStream: closing a response body before its end
// resets the stream: the server stops, and the connection's window is
// not lost (later large responses still arrive).
func TestBodyCloseResetsStream(t *testing.T) {
	var stopped atomic.Int64
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("big") != "" {
			w.Write(make([]byte, 2<<20))
			return
		}
		chunk := make([]byte, 16<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				stopped.Add(1)
				return
			}
			http.NewResponseController(w).Flush()
		}
	}), nil)
	cc := connect(t, addr, Config{})
	for range 3 {
		resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(resp.Body, make([]byte, 100<<10))
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for stopped.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := stopped.Load(); n != 3 {
		t.Errorf("%d of 3 handlers saw their stream end", n)
	}
	req := newReq(t, testCtx(t), "GET", addr, nil)
	req.URL.RawQuery = "big=1"
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 2<<20 {
		t.Errorf("a large response after the resets: %d bytes, %v", n, err)
	}
}

// TestSlowReader: a response body nobody reads holds at most the stream's
// window; the server waits for credit, and the rest arrives once read.
func TestSlowReader(t *testing.T) {
	const size = 4 << 20
	var written atomic.Int64
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for written.Load() < size {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}), nil)
	cc := connect(t, addr, Config{})
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(300 * time.Millisecond)
	// The server's own buffering adds to the window.
	if w := written.Load(); w > streamRecvWindow+256<<10 {
		t.Errorf("the server wrote %d bytes to an unread body; the stream's window is %d", w, streamRecvWindow)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Errorf("read %d bytes, %v; want %d", n, err, size)
	}
}

// TestStreamLimit: the server's SETTINGS_MAX_CONCURRENT_STREAMS bounds
// the slots Reserve takes.
func TestStreamLimit(t *testing.T) {
	release := make(chan struct{})
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}), &http.HTTP2Config{MaxConcurrentStreams: 1})
	cc := connect(t, addr, Config{})
	// A first request brings the server's SETTINGS.
	done := make(chan error, 1)
	go func() {
		resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for cc.Available() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cc.Reserve(); !errors.Is(err, ErrUnusable) {
		t.Errorf("Reserve with the server's one stream in use: %v, want ErrUnusable", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := cc.Reserve(); err != nil {
		t.Errorf("Reserve once the stream ended: %v", err)
	}
}

// TestHeaderLimit: a response header list over MaxHeaderBytes fails its
// request, not the connection.
func TestHeaderLimit(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("big") != "" {
			for i := range 16 {
				w.Header().Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("x", 256))
			}
		}
	}), nil)
	// Over the limit, but not twice over (that ends the connection:
	// h2wire.HeaderReader).
	cc := connect(t, addr, Config{MaxHeaderBytes: 3 << 10})
	req := newReq(t, testCtx(t), "GET", addr, nil)
	req.URL.RawQuery = "big=1"
	if _, err := cc.RoundTrip(req); !errors.Is(err, errHeaderTooLarge) {
		t.Errorf("4.5 KiB of header fields under a 3 KiB limit: %v", err)
	}
	resp, err := cc.RoundTrip(newReq(t, testCtx(t), "GET", addr, nil))
	if err != nil {
		t.Fatalf("the next request: %v", err)
	}
	resp.Body.Close()
}

// TestIdleTimeout: a connection without requests closes after
// IdleTimeout; one with a request in flight does not.
func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "" {
			<-release
		}
	}), nil)
	busy := connect(t, addr, Config{IdleTimeout: 50 * time.Millisecond})
	idle := connect(t, addr, Config{IdleTimeout: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := newReq(t, testCtx(t), "GET", addr, nil)
		req.URL.RawQuery = "wait=1"
		if resp, err := busy.RoundTrip(req); err == nil {
			resp.Body.Close()
		} else {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for idle.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if idle.Err() == nil {
		t.Error("an idle connection is open after 5 s with a 50 ms idle timeout")
	}
	if err := busy.Err(); err != nil {
		t.Errorf("a connection with a request in flight closed: %v", err)
	}
	close(release)
	<-done
}
