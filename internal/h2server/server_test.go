package h2server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve starts s on a loopback listener; every accepted connection is
// served by s.ServeConn. It returns the address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		s.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.ServeConn(context.Background(), nc)
			}()
		}
	}()
	return ln.Addr().String()
}

// h2cClient is net/http's HTTP/2 client with prior knowledge.
func h2cClient(t *testing.T) *http.Client {
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestRequestAndResponse(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1024)
	var got atomic.Pointer[http.Request]
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r)
		w.Header().Set("X-Reply", "yes")
		w.Write(body)
	})})
	req, _ := http.NewRequest("GET", "http://"+addr+"/a/b?c=d", nil)
	req.Host = "web.test"
	req.Header.Add("X-Multi", "1")
	req.Header.Add("X-Multi", "2")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(b, body) || resp.Header.Get("X-Reply") != "yes" || resp.ContentLength != 1024 {
		t.Errorf("response %s, %d bytes, X-Reply %q, Content-Length %d", resp.Status, len(b), resp.Header.Get("X-Reply"), resp.ContentLength)
	}
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type %q: the server does not sniff", ct)
	}
	r := got.Load()
	for _, c := range []struct{ name, got, want string }{
		{"method", r.Method, "GET"},
		{"host", r.Host, "web.test"},
		{"path", r.URL.Path, "/a/b"},
		{"query", r.URL.RawQuery, "c=d"},
		{"RequestURI", r.RequestURI, "/a/b?c=d"},
		{"proto", r.Proto, "HTTP/2.0"},
		{"X-Multi", strings.Join(r.Header["X-Multi"], ","), "1,2"},
		{"Cookie", strings.Join(r.Header["Cookie"], "|"), "a=1; b=2"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if r.ContentLength != 0 || r.Body != http.NoBody {
		t.Errorf("bodiless request: ContentLength %d, Body %T", r.ContentLength, r.Body)
	}
}

// A body far larger than the windows, both ways, on several streams at
// once: flow control returns credit as the handler reads.
func TestLargeBodiesBothWays(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})})
	client := h2cClient(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 3<<20)
			rand.Read(payload)
			resp, err := client.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(payload))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, payload) {
				t.Errorf("echo: %d of %d bytes, equal %v, err %v", len(b), len(payload), bytes.Equal(b, payload), err)
			}
		}()
	}
	wg.Wait()
}

// A streaming exchange: each message written by the client comes back
// before the next is sent (the handler flushes; nothing waits for the
// end of the request).
func TestFullDuplexStreaming(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", pr)
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for i := range 5 {
		msg := []byte(strings.Repeat(string(rune('a'+i)), 10))
		pw.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: got %q, err %v", i, got, err)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Errorf("after the request ended: %q, %v", rest, err)
	}
}

func TestTrailers(t *testing.T) {
	var reqTrailer atomic.Value
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		reqTrailer.Store(r.Trailer.Clone())
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("Content-Type", "application/grpc")
		w.Write([]byte("msg"))
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "fine")
	})})
	req, _ := http.NewRequest("POST", "http://"+addr+"/", io.MultiReader(strings.NewReader("in")))
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	req.ContentLength = -1
	body := &trailerBody{r: strings.NewReader("request"), req: req}
	req.Body = body
	resp, err := h2cClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "msg" {
		t.Errorf("body %q", b)
	}
	if got := resp.Header.Get("Grpc-Status"); got != "" {
		t.Errorf("Grpc-Status %q in the header, want it only in the trailers", got)
	}
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "fine" {
		t.Errorf("response trailers %v", resp.Trailer)
	}
	if got, _ := reqTrailer.Load().(http.Header); got.Get("X-Req-Trailer") != "sent" {
		t.Errorf("request trailers %v", got)
	}
}

// trailerBody sets the request's trailer once its body is read.
type trailerBody struct {
	r   io.Reader
	req *http.Request
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Req-Trailer", "sent")
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// A client that gives up resets its stream: the handler's context ends.
func TestClientResetCancelsTheRequest(t *testing.T) {
	ended := make(chan error, 1)
	started := make(chan struct{})
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(10 * time.Second):
			ended <- errors.New("not cancelled in 10 s")
		}
	})})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	go func() {
		<-started
		cancel()
	}()
	if _, err := h2cClient(t).Do(req); err == nil {
		t.Fatal("request succeeded")
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context: %v", err)
	}
}

func TestExpectContinue(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header["Expect"]; ok {
			t.Error("Expect reached the handler")
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})})
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos, ExpectContinueTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("PUT", "http://"+addr+"/", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "payload" {
		t.Errorf("body %q", b)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: the client waited out its ExpectContinueTimeout (no 100 Continue)", d)
	}
}

func TestHeadAndNoContent(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				t.Errorf("write after 204: %v", err)
			}
			return
		}
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("hello"))
	})})
	client := h2cClient(t)
	resp, err := client.Head("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 0 || resp.Header.Get("Content-Length") != "5" {
		t.Errorf("HEAD: %d body bytes, Content-Length %q", len(b), resp.Header.Get("Content-Length"))
	}
	resp, err = client.Get("http://" + addr + "/204")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// A handler that aborts (http.ErrAbortHandler) resets its stream: the
// client sees an error, not a short body.
func TestAbortResetsTheStream(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})})
	resp, err := h2cClient(t).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the body read to its end without an error")
	}
}

// Shutdown lets a request in flight finish, then the connection closes.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.Write([]byte("done"))
	})}
	addr := serve(t, s)
	client := h2cClient(t)
	result := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	<-started
	s.Shutdown()
	close(release)
	if got := <-result; got != "done" {
		t.Errorf("request in flight during Shutdown: %q", got)
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if !closing {
		t.Error("server not closing")
	}
	// The connection closes once its last stream is done.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left 5 s after their last request", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
