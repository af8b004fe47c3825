package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/sockio"
)

// threadReads is how many read(2) calls this thread has made, those that
// found nothing (EAGAIN) included: syscr of /proc/thread-self/io.
func threadReads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/io")
	if err != nil {
		t.Skipf("no per-thread I/O counters: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no syscr in %q", b)
	return 0
}

// TestH1ClientAwaitsTheResponse: a bodiless request on a connection the
// proxy dials (a raw socket, plaintext or under mTLS's record layer) goes
// out with sockio.Conn.WriteAwait, so reading its response takes one
// read(2), where a plain socket takes two (the first finds nothing). The
// server answers 10 ms after each request, so that the plain socket's first
// read always comes too early.
func TestH1ClientAwaitsTheResponse(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(10 * time.Millisecond)
		io.WriteString(w, "ok "+r.URL.Path)
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	secure := httptest.NewUnstartedServer(handler)
	secure.StartTLS()
	defer secure.Close()
	cfg := secure.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = nil
	cfg.ServerName = "example.com" // httptest's certificate

	tcp := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	cases := []struct {
		name  string
		addr  string
		dial  func(ctx context.Context, addr string) (net.Conn, error)
		reads int // read(2) calls per request
	}{
		{"plain socket", plain.Listener.Addr().String(), tcp, 2},
		{"raw socket", plain.Listener.Addr().String(), func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := tcp(ctx, addr)
			return sockio.Wrap(c), err
		}, 1},
		{"raw socket under mTLS records", secure.Listener.Addr().String(), func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := tcp(ctx, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(newRecConn(sockio.Wrap(c)), cfg)
			return tc, tc.HandshakeContext(ctx)
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newH1Client(tc.dial, time.Minute, 4, 64<<10)
			defer h.CloseIdleConnections()
			runtime.LockOSThread() // the counters are this thread's
			defer runtime.UnlockOSThread()
			overhead := -threadReads(t) + threadReads(t)
			// The first request dials (and under TLS reads the session
			// tickets): not counted.
			if _, got, err := h1Do(t, h, context.Background(), "GET", tc.addr, "/0", nil); err != nil || got != "ok /0" {
				t.Fatalf("first request: %q, %v", got, err)
			}
			const n = 20
			before := threadReads(t)
			for i := 1; i <= n; i++ {
				path := "/" + strconv.Itoa(i)
				if _, got, err := h1Do(t, h, context.Background(), "GET", tc.addr, path, nil); err != nil || got != "ok "+path {
					t.Fatalf("request %d: %q, %v", i, got, err)
				}
			}
			reads := threadReads(t) - before - overhead
			if reads != n*tc.reads {
				t.Fatalf("%d requests made %d read(2) calls; want %d per request", n, reads, tc.reads)
			}
		})
	}
}

// A TLS connection handed over before its handshake (which then runs on
// the first write) is not corked: the handshake's writes would wait for
// its own reads.
func TestH1ClientTLSHandshakeOnFirstWrite(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.StartTLS()
	defer srv.Close()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos, cfg.ServerName = nil, "example.com"
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return tls.Client(newRecConn(sockio.Wrap(c)), cfg), nil
	}
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, got, err := h1Do(t, h, ctx, "GET", srv.Listener.Addr().String(), "/", nil)
		cancel()
		if err != nil || got != "ok" {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
}

// lingerClose half-closes c (FIN) and keeps reading, as servers that
// close idle keep-alive connections "lingering" do: nothing more comes.
func lingerClose(c net.Conn) {
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// A server that closes a pooled connection with a FIN and goes on reading
// (it never answers there again, and nothing else arrives): the next
// request goes on a new connection at once, as before WriteAwait, whose
// own look at the socket finds the FIN, and nothing is sent on the old one.
func TestH1ClientLingeringCloseOfAPooledConnection(t *testing.T) {
	var stale atomic.Int64
	addr, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(30 * time.Millisecond) // the client pools it meanwhile
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, _ := io.Copy(io.Discard, br); n > 0 {
			stale.Add(1)
		}
	})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		return sockio.Wrap(c), err
	}
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	for i := range 3 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond) // the server's FIN arrives
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		_, got, err := h1Do(t, h, ctx, "GET", addr, "/", nil)
		cancel()
		if err != nil || got != "ok" {
			t.Fatalf("request %d: %q, %v after %v; want ok at once on a new connection", i, got, err, time.Since(start))
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := stale.Load(); n != 0 {
		t.Errorf("%d requests were sent on connections the server had closed", n)
	}
}

// A new connection whose server answers before being asked (a 503, then
// a lingering close): the request still goes out and that answer is read,
// at once, as before WriteAwait.
func TestH1ClientEarlyAnswerOnANewConnection(t *testing.T) {
	addr, _ := rawServer(t, func(c net.Conn, _ *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
		lingerClose(c)
	})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			time.Sleep(20 * time.Millisecond) // the answer arrives first
		}
		return sockio.Wrap(c), err
	}
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	resp, got, err := h1Do(t, h, ctx, "GET", addr, "/", nil)
	if err != nil || resp.StatusCode != 503 || got != "busy" {
		t.Fatalf("got %v %q, %v after %v; want the early 503 at once", resp, got, err, time.Since(start))
	}
}
