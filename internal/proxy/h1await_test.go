package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/sockio"
)

// threadReads is how many read(2) calls this thread has made, those that
// found nothing (EAGAIN) included: syscr of /proc/thread-self/io.
func threadReads(t *testing.T) int {
	return int(proctest.IOCount(t, "/proc/thread-self/io", "syscr"))
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

// roundTripBody sends req through h and returns the response's body.
func roundTripBody(h *h1Client, req *http.Request) (string, error) {
	resp, err := h.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A server that closes a pooled connection with a FIN and goes on reading
// (it never answers there again, and nothing else arrives): the next
// request goes on a new connection at once, whatever its method, and not
// one byte of it on the old one. A bodiless request on a raw socket leaves
// that look to its last write (WriteAwait); a head longer than the write
// buffer looks before its first. Plaintext, and under mTLS's records
// (the server's close_notify, then its FIN).
func TestH1ClientLingeringCloseOfAPooledConnection(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", secure), func(t *testing.T) {
			var stale atomic.Int64
			cert := selfSigned(t, "server.test")
			addr, _ := rawServer(t, func(c net.Conn, _ *bufio.Reader) {
				tcp := c.(*net.TCPConn)
				rw := net.Conn(tcp)
				if secure {
					tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
					if tc.Handshake() != nil {
						return
					}
					rw = tc
				}
				br := bufio.NewReader(rw)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(rw, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(30 * time.Millisecond) // the client pools it meanwhile
				if tc, ok := rw.(*tls.Conn); ok {
					tc.CloseWrite() // close_notify
				}
				tcp.CloseWrite()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				// Any byte of a request (plaintext, or as TLS application
				// data) counts; the client's close_notify does not.
				if n, _ := io.Copy(io.Discard, br); n > 0 {
					stale.Add(1)
				}
			})
			dial := func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil || !secure {
					return sockio.Wrap(c), err
				}
				// The test server's own certificate: nothing to verify it against.
				tc := tls.Client(newRecConn(sockio.Wrap(c)), &tls.Config{InsecureSkipVerify: true})
				return tc, tc.HandshakeContext(ctx)
			}
			h := newH1Client(dial, time.Minute, 4, 64<<10)
			defer h.CloseIdleConnections()
			for i, method := range []string{"GET", "GET", "DELETE", "GET big"} {
				if i > 0 {
					time.Sleep(300 * time.Millisecond) // the server's FIN arrives
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				req, err := http.NewRequestWithContext(ctx, strings.TrimSuffix(method, " big"), "http://"+addr+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(method, " big") {
					req.Header.Set("X-Big", strings.Repeat("b", 6<<10)) // over pc.bw's 4 KiB
				}
				start := time.Now()
				got, err := roundTripBody(h, req)
				cancel()
				if err != nil || got != "ok" {
					t.Fatalf("%s %d: %q, %v after %v; want ok at once on a new connection", method, i, got, err, time.Since(start))
				}
			}
			time.Sleep(50 * time.Millisecond)
			if n := stale.Load(); n != 0 {
				t.Errorf("%d requests (or parts) were sent on connections the server had closed", n)
			}
		})
	}
}

// heldWrites holds what is written to it while hold is set, for flush to
// send in one write.
type heldWrites struct {
	net.Conn
	hold bool
	buf  []byte
}

func (h *heldWrites) Write(p []byte) (int, error) {
	if h.hold {
		h.buf = append(h.buf, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}

func (h *heldWrites) flush() error {
	h.hold = false
	_, err := h.Conn.Write(h.buf)
	return err
}

// An mTLS server whose close_notify goes out in the same TCP write as its
// response, with no FIN after it: the client's tls.Conn reads both records
// at once, so no look at the socket can see the close; the probe of what
// the tls.Conn holds (peerClosed) does, and a POST, which cannot be
// replayed, goes on a new connection with not one byte on the old one.
func TestH1ClientCloseNotifyWithTheResponse(t *testing.T) {
	var stale atomic.Int64
	cert := selfSigned(t, "server.test")
	addr, conns := rawServer(t, func(c net.Conn, _ *bufio.Reader) {
		hw := &heldWrites{Conn: c}
		tc := tls.Server(hw, &tls.Config{Certificates: []tls.Certificate{cert}})
		if tc.Handshake() != nil {
			return
		}
		br := bufio.NewReader(tc)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		hw.hold = true
		io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		tc.CloseWrite() // close_notify (which leaves c's write deadline at now)
		c.SetWriteDeadline(time.Time{})
		if hw.flush() != nil {
			return
		}
		// No FIN: only the tls.Conn knows the connection is closed.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, _ := io.Copy(io.Discard, br); n > 0 {
			stale.Add(1)
		}
	})
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(newRecConn(sockio.Wrap(c)), &tls.Config{InsecureSkipVerify: true})
		return tc, tc.HandshakeContext(ctx)
	}
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader("once"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTripBody(h, req)
		cancel()
		if err != nil || got != "ok" {
			t.Fatalf("POST %d: %q, %v; want ok on a new connection", i, got, err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := stale.Load(); n != 0 {
		t.Errorf("%d requests (or parts) were sent on connections the server had closed", n)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("server saw %d connections, want 3", n)
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
