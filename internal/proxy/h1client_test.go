package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// h1Test is an h1Client dialing plain TCP, with a 64 KiB response head limit.
func h1Test(idle time.Duration) *h1Client {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return newH1Client(dial, idle, 4, 64<<10)
}

// h1CountingServer is an HTTP server on loopback that counts its connections.
func h1CountingServer(t *testing.T, h http.HandlerFunc) (addr string, conns *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int64)
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), conns
}

func h1Do(t *testing.T, h *h1Client, ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// TestH1ClientPoolsConnections: sequential requests, bodiless or with a
// body (sized or chunked), share one connection unless the server says
// Connection: close.
func TestH1ClientPoolsConnections(t *testing.T) {
	for _, tc := range []struct {
		name      string
		close     bool
		wantConns int64
	}{
		{"keep-alive", false, 1},
		{"server closes", true, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := h1CountingServer(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if tc.close {
					w.Header().Set("Connection", "close")
				}
				fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
			})
			h := h1Test(time.Minute)
			defer h.CloseIdleConnections()
			for i := range 12 {
				method, body, want := "GET", io.Reader(nil), fmt.Sprintf("GET /x?i=%d ", i)
				switch i % 3 {
				case 1:
					method, body, want = "POST", strings.NewReader("sized"), fmt.Sprintf("POST /x?i=%d sized", i)
				case 2:
					method, body, want = "PUT", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked")), fmt.Sprintf("PUT /x?i=%d chunked", i)
				}
				resp, got, err := h1Do(t, h, context.Background(), method, addr, fmt.Sprintf("/x?i=%d", i), body)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if resp.StatusCode != 200 || got != want {
					t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, got, want)
				}
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("server saw %d connections, want %d", got, tc.wantConns)
			}
		})
	}
}

// rawServer answers each connection with handle, on loopback.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	addr = listenTCP(t, func(c net.Conn) {
		conns.Add(1)
		defer c.Close()
		handle(c, bufio.NewReader(c))
	})
	return addr, conns
}

// TestH1ClientRetriesStaleConnection: a pooled connection the server has
// closed is noticed before reuse (and replaced), for a POST that cannot be
// replayed too, however briefly it was idle. (h1Test's plain sockets take
// peerClosed's look; on a raw socket a bodiless request's last write looks:
// TestH1ClientLingeringCloseOfAPooledConnection.)
func TestH1ClientRetriesStaleConnection(t *testing.T) {
	for _, tc := range []struct {
		method  string
		idle    time.Duration
		wantErr bool
	}{
		{"GET", 50 * time.Millisecond, false},
		{"POST", 50 * time.Millisecond, false},
		{"POST", 1200 * time.Millisecond, false},
	} {
		t.Run(fmt.Sprintf("%s after %v", tc.method, tc.idle), func(t *testing.T) {
			// One response per connection, then a close without saying so.
			addr, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			})
			h := h1Test(time.Minute)
			defer h.CloseIdleConnections()
			if _, got, err := h1Do(t, h, context.Background(), tc.method, addr, "/", nil); err != nil || got != "ok" {
				t.Fatalf("first request: %q, %v", got, err)
			}
			time.Sleep(tc.idle) // the server's close arrives
			_, got, err := h1Do(t, h, context.Background(), tc.method, addr, "/", nil)
			switch {
			case tc.wantErr && err == nil:
				t.Errorf("second %s on a stale connection succeeded (%q): it must not be replayed", tc.method, got)
			case !tc.wantErr && (err != nil || got != "ok"):
				t.Errorf("second request: %q, %v; want ok on a new connection", got, err)
			case !tc.wantErr && conns.Load() != 2:
				t.Errorf("server saw %d connections, want 2", conns.Load())
			}
		})
	}
}

// TestH1ClientResponseHeads: 1xx heads are skipped, oversized heads fail.
func TestH1ClientResponseHeads(t *testing.T) {
	huge := "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n"
	for _, tc := range []struct {
		name, answer, want, wantErr string
	}{
		{"early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"continue unasked", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes", "yes", ""},
		{"head too long", "HTTP/1.1 200 OK\r\n" + huge + "Content-Length: 2\r\n\r\nok", "", "too long"},
		{"unasked switch", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "", "switched protocols"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err == nil {
					io.WriteString(c, tc.answer)
					time.Sleep(100 * time.Millisecond)
				}
			})
			h := h1Test(time.Minute)
			defer h.CloseIdleConnections()
			_, got, err := h1Do(t, h, context.Background(), "GET", addr, "/", nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestH1ClientEarlyCloseAndCancel: closing a body before its end, or
// canceling the request's context mid-body, ends the connection at once
// (the server's endless body stops), and the next request gets a new one.
func TestH1ClientEarlyCloseAndCancel(t *testing.T) {
	for _, cancelIt := range []bool{false, true} {
		t.Run(fmt.Sprintf("cancel=%v", cancelIt), func(t *testing.T) {
			ended := make(chan error, 4)
			addr, conns := h1CountingServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/short" {
					io.WriteString(w, "short")
					return
				}
				chunk := bytes.Repeat([]byte("x"), 8<<10)
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
					if _, err := w.Write(chunk); err != nil {
						ended <- err
						return
					}
				}
				ended <- nil
			})
			h := h1Test(time.Minute)
			defer h.CloseIdleConnections()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/endless", nil)
			resp, err := h.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
			if cancelIt {
				cancel()
				start := time.Now()
				_, err := io.Copy(io.Discard, resp.Body)
				if err == nil || time.Since(start) > 5*time.Second {
					t.Errorf("reading after cancel: %v after %v, want a prompt error", err, time.Since(start))
				}
			}
			resp.Body.Close()
			select {
			case err := <-ended:
				if err == nil {
					t.Error("the server wrote its whole endless body: the connection was not closed")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the server is still writing 5s after the body was abandoned")
			}
			if _, got, err := h1Do(t, h, context.Background(), "GET", addr, "/short", nil); err != nil || got != "short" {
				t.Fatalf("next request: %q, %v", got, err)
			}
			if conns.Load() != 2 {
				t.Errorf("server saw %d connections, want 2 (the abandoned one is not reused)", conns.Load())
			}
		})
	}
}

// TestH1ClientEarlyResponseToUpload: a server that answers before reading
// a large body is heard, and its connection is not reused.
func TestH1ClientEarlyResponseToUpload(t *testing.T) {
	addr, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
		time.Sleep(500 * time.Millisecond)
	})
	h := h1Test(time.Minute)
	defer h.CloseIdleConnections()
	body := io.LimitReader(zeros{}, 64<<20)
	done := make(chan struct{})
	var resp *http.Response
	var got string
	var err error
	go func() {
		defer close(done)
		resp, got, err = h1Do(t, h, context.Background(), "POST", addr, "/upload", body)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s while the upload was refused")
	}
	if err != nil || resp.StatusCode != 413 || got != "big" {
		t.Fatalf("got %v %q, %v; want 413 big", resp, got, err)
	}
	h.mu.Lock()
	pooled := len(h.idle[addr])
	h.mu.Unlock()
	if pooled != 0 || conns.Load() != 1 {
		t.Errorf("%d pooled connections after an unfinished upload (server saw %d), want 0", pooled, conns.Load())
	}
}

// TestH1ClientIdleTimeout: idle connections are closed after the timeout.
func TestH1ClientIdleTimeout(t *testing.T) {
	closed := make(chan struct{}, 1)
	addr, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if _, err := br.ReadByte(); errors.Is(err, io.EOF) {
			closed <- struct{}{}
		}
	})
	h := h1Test(100 * time.Millisecond)
	defer h.CloseIdleConnections()
	if _, got, err := h1Do(t, h, context.Background(), "GET", addr, "/", nil); err != nil || got != "ok" {
		t.Fatalf("request: %q, %v", got, err)
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the idle connection is still open 3s after a 100ms idle timeout")
	}
}

// TestH1ClientStrayBytesOnIdleConnection: bytes a server sends on an idle
// connection (here a body for a HEAD, after its head) are not read as the
// next request's response: the connection is dropped before reuse.
func TestH1ClientStrayBytesOnIdleConnection(t *testing.T) {
	addr, conns := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
			if req.Method == http.MethodHead {
				time.Sleep(20 * time.Millisecond)
				io.WriteString(c, "hello") // wrong: a body for HEAD
			} else {
				io.WriteString(c, "world")
			}
		}
	})
	h := h1Test(time.Minute)
	defer h.CloseIdleConnections()
	if _, _, err := h1Do(t, h, context.Background(), http.MethodHead, addr, "/", nil); err != nil {
		t.Fatalf("HEAD: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // the stray bytes arrive
	resp, got, err := h1Do(t, h, context.Background(), http.MethodGet, addr, "/", nil)
	if err != nil || resp.StatusCode != http.StatusOK || got != "world" {
		t.Fatalf("GET after the HEAD: %v, %q, %v; want 200 world", resp, got, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("server saw %d connections, want 2 (the tainted one dropped)", n)
	}
}

// failingBody yields some bytes, then fails, as a client's malformed
// chunked body does.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "0123456789"), nil
	}
	return 0, errors.New("malformed chunk from the client")
}

func (b *failingBody) Close() error { return nil }

// TestH1ClientRequestBodyFails: when the request's body fails half-way
// the request ends with an error at once, instead of waiting for an
// answer the server (waiting for the rest of the body) never gives.
func TestH1ClientRequestBodyFails(t *testing.T) {
	addr, _ := h1CountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		io.WriteString(w, "ok")
	})
	h := h1Test(time.Minute)
	defer h.CloseIdleConnections()
	for _, length := range []int64{-1, 100} {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Body, req.ContentLength = &failingBody{}, length
		resp, err, ok := roundTripWithin(h, req, 2*time.Second)
		switch {
		case !ok:
			t.Errorf("length %d: RoundTrip still blocked 2s after the body failed", length)
		case err == nil:
			resp.Body.Close()
			t.Errorf("length %d: a request whose body failed got %d", length, resp.StatusCode)
		}
	}
}

// roundTripWithin is h.RoundTrip(req), or ok false when it has not
// returned within d (a test that must not hang).
func roundTripWithin(h *h1Client, req *http.Request, d time.Duration) (resp *http.Response, err error, ok bool) {
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := h.RoundTrip(req)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err, true
	case <-time.After(d):
		return nil, nil, false
	}
}

// TestH1ClientStalledBodyTimeout: a request whose client stops sending its
// body ends when its context does, not when the client resumes.
func TestH1ClientStalledBodyTimeout(t *testing.T) {
	addr, _ := h1CountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
	})
	h := h1Test(time.Minute)
	defer h.CloseIdleConnections()
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("abc")) // then nothing more
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err, ok := roundTripWithin(h, req, 2*time.Second)
	switch {
	case !ok:
		t.Errorf("RoundTrip still blocked 2s after its 300ms deadline")
	case err == nil:
		resp.Body.Close()
		t.Errorf("a request whose body stalled got %d", resp.StatusCode)
	}
}

// TestH1ClientEndlessInformational: 1xx heads count against the one
// response-head limit, so a server that sends them forever fails the
// request instead of holding it.
func TestH1ClientEndlessInformational(t *testing.T) {
	addr, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			if _, err := io.WriteString(c, strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 100)); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	h := h1Test(time.Minute)
	defer h.CloseIdleConnections()
	start := time.Now()
	_, _, err := h1Do(t, h, context.Background(), http.MethodGet, addr, "/", nil)
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("endless 1xx: %v, want a head-too-long error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("endless 1xx held the request %v", d)
	}
}

// TestH1ClientRequestAllocs bounds the allocations of a request on a
// pooled connection: the client's side, against a server that allocates
// nothing (12 on Go 1.26.8).
func TestH1ClientRequestAllocs(t *testing.T) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	addr, _ := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
	h := h1Test(time.Minute)
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf [8]byte
	do := func() {
		resp, err := h.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, buf[:2]); err != nil {
			t.Fatal(err)
		}
		resp.Body.Read(buf[:]) // EOF: the connection goes back to the pool
		resp.Body.Close()
	}
	do()
	n := testing.AllocsPerRun(200, do)
	t.Logf("%v allocations per request", n)
	if n > 12 {
		t.Errorf("%v allocations per request on a pooled connection, want at most 12", n)
	}
}
