package proxy

import (
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
// server answers 2 ms after each request, so that the plain socket's first
// read always comes too early.
func TestH1ClientAwaitsTheResponse(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
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
