package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// h1App is the upstream of the comparison tests: net/http's server with
// one behaviour per path.
func h1App(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 10000)))
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"x"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %d %q", r.Method, len(b), b)
	})
	mux.HandleFunc("/status599", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(599) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// h1Exchange sends raw bytes (each part a separate write, 20 ms apart)
// and reads n responses, then whether the server closed the connection.
func h1Exchange(t *testing.T, addr string, parts []string, n int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var out strings.Builder
	methods := requestMethods(parts)
	for i := 0; i < n; i++ {
		var req *http.Request
		if i < len(methods) {
			req = &http.Request{Method: methods[i]}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			fmt.Fprintf(&out, "read error: %v\n", err)
			return loopbackPorts.ReplaceAllString(out.String(), "127.0.0.1:PORT")
		}
		body, berr := io.ReadAll(resp.Body)
		fmt.Fprintf(&out, "%s %s\n", resp.Proto, resp.Status)
		var keys []string
		for k := range resp.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := resp.Header[k]
			if k == "Date" {
				v = []string{"<date>"}
			}
			fmt.Fprintf(&out, "%s: %q\n", k, v)
		}
		fmt.Fprintf(&out, "length %d te %q close %v\nbody %q err %v\ntrailer %v\n", resp.ContentLength, resp.TransferEncoding, resp.Close, body, berr, resp.Trailer)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err = br.ReadByte()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		out.WriteString("open\n")
	case err != nil:
		out.WriteString("closed\n")
	default:
		out.WriteString("extra bytes\n")
	}
	return loopbackPorts.ReplaceAllString(out.String(), "127.0.0.1:PORT")
}

var loopbackPorts = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

// requestMethods guesses the methods of the requests in parts (for HEAD).
func requestMethods(parts []string) []string {
	var ms []string
	for _, line := range strings.Split(strings.Join(parts, ""), "\n") {
		for _, m := range []string{"GET", "HEAD", "POST", "PUT"} {
			if strings.HasPrefix(line, m+" /") {
				ms = append(ms, m)
			}
		}
	}
	return ms
}

// TestH1LoopAnswersAsNetHTTP sends the same bytes to a proxy serving
// HTTP/1 with its own loop and to one serving it with net/http only, and
// compares the responses (Date aside) and whether the connection stays.
func TestH1LoopAnswersAsNetHTTP(t *testing.T) {
	app := h1App(t)
	own := startProxy(t, func(c *Config) { c.NetHTTP1Server = false }, app)
	std := startProxy(t, func(c *Config) { c.NetHTTP1Server = true }, app)
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: app\r\n\r\n" }
	bigHeader := "X-Big: " + strings.Repeat("a", 10<<10) + "\r\n"
	hugeHeader := "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n"
	tests := []struct {
		name  string
		parts []string
		n     int
	}{
		{"known length", []string{get("/small")}, 1},
		{"keep-alive, three requests", []string{get("/small"), get("/stream"), get("/small")}, 3},
		{"pipelined", []string{get("/small") + get("/big") + get("/204")}, 3},
		{"HEAD", []string{"HEAD /small HTTP/1.1\r\nHost: app\r\n\r\n", get("/small")}, 2},
		{"HEAD of unknown length", []string{"HEAD /big HTTP/1.1\r\nHost: app\r\n\r\n", get("/small")}, 2},
		{"streamed", []string{get("/stream")}, 1},
		{"large unknown length", []string{get("/big")}, 1},
		{"empty", []string{get("/empty")}, 1},
		{"204", []string{get("/204"), get("/small")}, 2},
		{"304", []string{get("/304"), get("/small")}, 2},
		{"unknown status", []string{get("/status599")}, 1},
		{"trailers", []string{get("/trailers")}, 1},
		{"no route: 404 from the app", []string{get("/nope")}, 1},
		{"POST with length", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nabcde", get("/small")}, 2},
		{"POST chunked", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", get("/small")}, 2},
		{"POST body split", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 6\r\n\r\nabc", "def", get("/small")}, 2},
		{"POST unread by the app", []string{"POST /small HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\n0123456789", get("/small")}, 2},
		{"POST of 300 KiB", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 307200\r\n\r\n" + strings.Repeat("z", 300<<10), get("/small")}, 2},
		{"head split", []string{"GET /small HTTP/1.1\r\nHo", "st: app\r\n", "\r\n"}, 1},
		{"malformed request line", []string{"GARBAGE\r\n\r\n"}, 1},
		{"malformed header", []string{"GET /small HTTP/1.1\r\nHost: app\r\nNoColon\r\n\r\n"}, 1},
		{"bad header name", []string{"GET /small HTTP/1.1\r\nHost: app\r\nBad Name: x\r\n\r\n"}, 1},
		{"bad header value", []string{"GET /small HTTP/1.1\r\nHost: app\r\nX: a\x00b\r\n\r\n"}, 1},
		{"missing Host", []string{"GET /small HTTP/1.1\r\n\r\n"}, 1},
		{"two Hosts", []string{"GET /small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"}, 1},
		{"CL and TE", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", get("/small")}, 2},
		{"differing CLs", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"}, 1},
		{"same CL twice", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", get("/small")}, 2},
		{"bad chunk size", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"}, 1},
		{"TE not chunked", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: gzip\r\n\r\n"}, 1},
		{"head over the loop's buffer", []string{"GET /small HTTP/1.1\r\nHost: app\r\n" + bigHeader + "\r\n", get("/small")}, 2},
		{"head over MaxHeaderBytes", []string{"GET /small HTTP/1.1\r\nHost: app\r\n" + hugeHeader + "\r\n"}, 1},
		{"HTTP/1.0", []string{"GET /small HTTP/1.0\r\nHost: app\r\n\r\n"}, 1},
		{"HTTP/1.0 keep-alive", []string{"GET /small HTTP/1.0\r\nHost: app\r\nConnection: keep-alive\r\n\r\n", get("/small")}, 2},
		{"HTTP/2.0 request line", []string{"GET /small HTTP/2.0\r\nHost: app\r\n\r\n"}, 1},
		{"Connection: close", []string{"GET /small HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"}, 1},
		{"Connection: close after keep-alive", []string{get("/small"), "GET /small HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"}, 2},
		{"Expect: 100-continue", []string{"POST /echo HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n", "abc"}, 2},
		{"unknown Expect", []string{"GET /small HTTP/1.1\r\nHost: app\r\nExpect: magic\r\n\r\n"}, 1},
		{"leading CRLF", []string{"\r\n" + get("/small")}, 1},
		{"absolute target", []string{"GET http://app/small HTTP/1.1\r\nHost: app\r\n\r\n"}, 1},
		{"OPTIONS *", []string{"OPTIONS * HTTP/1.1\r\nHost: app\r\n\r\n"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := h1Exchange(t, std.bindings[0], tt.parts, tt.n)
			got := h1Exchange(t, own.bindings[0], tt.parts, tt.n)
			if got != want {
				t.Errorf("own loop answered\n%s\nnet/http answered\n%s", got, want)
			}
			if os.Getenv("WEFT_TEST_DEBUG") != "" {
				t.Logf("answer:\n%s", got)
			}
		})
	}
}

// TestH1LoopServesKeepAlive checks that the loop, not net/http, serves a
// plain keep-alive connection (else the comparison above proves nothing).
func TestH1LoopServesKeepAlive(t *testing.T) {
	app := h1App(t)
	own := startProxy(t, func(c *Config) { c.NetHTTP1Server = false }, app)
	c, err := net.Dial("tcp", own.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 3 {
		io.WriteString(c, "GET /small HTTP/1.1\r\nHost: app\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	own.Proxy.outbound.h1.mu.Lock()
	n := len(own.Proxy.outbound.h1.conns)
	own.Proxy.outbound.h1.mu.Unlock()
	if n != 1 {
		t.Fatalf("connections served by the own loop = %d, want 1", n)
	}
}

// TestH1LoopCancelsWhenClientGoes: a request whose client closes its
// connection is cancelled upstream.
func TestH1LoopCancelsWhenClientGoes(t *testing.T) {
	for _, netHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("net/http=%v", netHTTP), func(t *testing.T) {
			started, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				select {
				case <-r.Context().Done():
					cancelled <- struct{}{}
				case <-time.After(10 * time.Second):
				}
			}))
			defer app.Close()
			tp := startProxy(t, func(c *Config) { c.NetHTTP1Server = netHTTP }, app.Listener.Addr().String())
			c, err := net.Dial("tcp", tp.bindings[0])
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n")
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("the request did not reach the app")
			}
			c.Close()
			select {
			case <-cancelled:
			case <-time.After(5 * time.Second):
				t.Fatal("the app's request was not cancelled after the client went away")
			}
		})
	}
}

// TestH1LoopShutdownDrains: a request in flight when the proxy shuts down
// completes (with Connection: close); an idle connection is closed.
func TestH1LoopShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	defer app.Close()
	tp := startProxy(t, func(c *Config) { c.NetHTTP1Server = false }, app.Listener.Addr().String())
	idle, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: app\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	busy, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- tp.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection at shutdown: read %v, want EOF", err)
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("request in flight at shutdown: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Errorf("in-flight response: body %q close %v, want \"done\" and Connection: close", b, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestH1LoopHeaderReadTimeout: a head that does not complete within
// HeaderReadTimeout closes the connection (slowloris); a complete one on
// a connection idle for longer is served.
func TestH1LoopHeaderReadTimeout(t *testing.T) {
	app := h1App(t)
	tp := startProxy(t, func(c *Config) { c.NetHTTP1Server = false; c.HeaderReadTimeout = 300 * time.Millisecond }, app)
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /small HTTP/1.1\r\nHost: app\r\n")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("unfinished head: read %v, want EOF", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("closed after %v, want ~300ms", d)
	}
	idle, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(500 * time.Millisecond)
	io.WriteString(idle, "GET /small HTTP/1.1\r\nHost: app\r\n\r\n")
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("request after an idle wait longer than the head timeout: %v %v", resp, err)
	}
}
