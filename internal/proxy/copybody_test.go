package proxy

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type flushRec struct {
	h       http.Header
	flushes atomic.Int32
	written atomic.Int64
}

func (f *flushRec) Header() http.Header         { return f.h }
func (f *flushRec) WriteHeader(int)             {}
func (f *flushRec) Write(b []byte) (int, error) { f.written.Add(int64(len(b))); return len(b), nil }
func (f *flushRec) Flush()                      { f.flushes.Add(1) }

// An HTTP/2 upstream that declares Content-Length: 5, sends the 5 bytes
// and holds END_STREAM (trailers computed later): the body's Read returns
// the bytes, and the next Read blocks until the stream ends.
type lateEOF struct {
	sent    bool
	release chan struct{}
}

func (l *lateEOF) Read(p []byte) (int, error) {
	if !l.sent {
		l.sent = true
		return copy(p, "hello"), nil
	}
	<-l.release
	return 0, io.EOF
}

func TestCopyBodyLastChunkHeld(t *testing.T) {
	w := &flushRec{h: http.Header{}}
	body := &lateEOF{release: make(chan struct{})}
	done := make(chan struct{})
	go func() { copyBody(w, body, true, 5); close(done) }()
	time.Sleep(100 * time.Millisecond)
	t.Logf("after 100ms: written=%d flushes=%d (bytes are in the server's buffer, not on the wire, until upstream END_STREAM)", w.written.Load(), w.flushes.Load())
	if w.written.Load() == 5 && w.flushes.Load() == 0 {
		t.Errorf("the complete body is held unflushed while the upstream stream is still open")
	}
	close(body.release)
	<-done
}

// An HTTP/2 upstream sends its whole declared-length body, flushes, and ends
// the stream a second later. Through the proxy (h2 client), the body
// arrives only when the stream ends.
func TestH2KnownLengthBodyDelayed(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		time.Sleep(time.Second)
	}))
	tp := startProxy(t, nil, backend)
	for _, c := range []struct{ name, addr string }{{"direct", backend}, {"proxied", tp.bindings[0]}} {
		start := time.Now()
		resp, err := h2cClient().Get("http://" + c.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		_, err = io.ReadFull(resp.Body, buf)
		d := time.Since(start)
		resp.Body.Close()
		t.Logf("%s: %s got %q after %v", c.name, resp.Proto, buf, d)
		if err != nil || d > 500*time.Millisecond {
			t.Errorf("%s: body after %v (err %v), want at once", c.name, d, err)
		}
	}
}

// dataThenEOF returns its data with a nil error, then io.EOF: an HTTP/2
// upstream's body whose END_STREAM came with its last DATA frame.
type dataThenEOF struct{ left int }

func (d *dataThenEOF) Read(p []byte) (int, error) {
	if d.left == 0 {
		return 0, io.EOF
	}
	n := min(d.left, len(p))
	d.left -= n
	return n, nil
}

// TestCopyBodyLateFlushAllocs: relaying a known-length HTTP/2 response
// arms the late flush (the stream's end is seen one Read after the data)
// without allocating a timer and its closures per response; the one
// allocation left is the ResponseController.
func TestCopyBodyLateFlushAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items at random")
	}
	w := &flushRec{h: http.Header{}}
	body := &dataThenEOF{}
	copyBody(w, &dataThenEOF{left: 1024}, true, 1024) // fill the pools
	allocs := testing.AllocsPerRun(200, func() {
		body.left = 1024
		if err := copyBody(w, body, true, 1024); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("copyBody of a 1 KiB known-length HTTP/2 body: %.1f allocations, want at most 1", allocs)
	}
	if w.flushes.Load() != 0 {
		t.Errorf("%d flushes: the stream ended at once, want none (the server writes the data with END_STREAM)", w.flushes.Load())
	}
}

// TestCopyBodyBufferSize: a body of known small length is copied through
// a small buffer, others through a large one (bytes allocated by a copy
// with the pools empty, as after a garbage collection).
func TestCopyBodyBufferSize(t *testing.T) {
	tests := []struct {
		name           string
		length, size   int64
		minMem, maxMem uint64
	}{
		{"1 KiB, known length", 1024, 1024, 0, 16 << 10},
		{"4 KiB, known length", 4 << 10, 4 << 10, 0, 16 << 10},
		{"1 KiB, length unknown", -1, 1024, 32 << 10, 96 << 10},
		{"64 KiB, known length", 64 << 10, 64 << 10, 32 << 10, 96 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &flushRec{h: http.Header{}}
			body := &dataThenEOF{left: int(tt.size)}
			runtime.GC()
			runtime.GC() // the pools are empty
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			if err := copyBody(w, body, false, tt.length); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got < tt.minMem || got > tt.maxMem {
				t.Errorf("%d bytes allocated, want %d–%d", got, tt.minMem, tt.maxMem)
			}
		})
	}
}

// An upstream that sends its response headers and then holds the body (a
// gRPC server stream before its first message, a long poll): the client
// gets the headers at once through the proxy, over HTTP/1 (known length
// and chunked) and HTTP/2, not when the body starts.
func TestHeadersBeforeSlowBody(t *testing.T) {
	const hold = 2 * time.Second
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("length") != "" {
			w.Header().Set("Content-Length", "5")
		}
		w.Header().Set("X-Early", "yes")
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
		select {
		case <-time.After(hold):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "hello")
	}))
	tp := startProxy(t, nil, backend)
	h1 := &http.Client{Timeout: 10 * time.Second}
	for _, c := range []struct {
		name   string
		client *http.Client
		path   string
	}{
		{"http1-length", h1, "/?length=1"},
		{"http1-chunked", h1, "/"},
		{"h2", h2cClient(), "/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp, err := c.client.Get("http://" + tp.bindings[0] + c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			headers := time.Since(start)
			body, err := io.ReadAll(resp.Body)
			t.Logf("%s: %d, X-Early %q after %v; body %q after %v", resp.Proto, resp.StatusCode, resp.Header.Get("X-Early"), headers, body, time.Since(start))
			if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Early") != "yes" {
				t.Errorf("headers: %d %v", resp.StatusCode, resp.Header)
			}
			if headers > hold/4 {
				t.Errorf("the headers came after %v, with the body; want them at once (the upstream sent them %v before its body)", headers, hold)
			}
			if err != nil || string(body) != "hello" {
				t.Errorf("body %q, %v; want hello", body, err)
			}
		})
	}
}

// bufferedBody is a body that says how much of it is already read.
type bufferedBody struct {
	io.Reader
	n int
}

func (b bufferedBody) Buffered() int { return b.n }

// copyBody arms its 1 ms timer only when the body's first Read may wait.
func TestBodyReady(t *testing.T) {
	tests := []struct {
		name   string
		body   io.Reader
		length int64
		want   bool
	}{
		{"known length, bytes buffered", bufferedBody{strings.NewReader("x"), 1}, 1, true},
		{"known length, nothing buffered", bufferedBody{strings.NewReader("x"), 0}, 1, false},
		{"chunked (unknown length), bytes buffered", bufferedBody{strings.NewReader("x"), 1}, -1, false},
		{"a body that cannot tell", strings.NewReader("x"), 1, false},
		{"a request body still being written", &h1Body{wrote: make(chan error, 1)}, 1, false},
	}
	for _, tt := range tests {
		if got := bodyReady(tt.body, tt.length); got != tt.want {
			t.Errorf("%s: bodyReady = %v, want %v", tt.name, got, tt.want)
		}
	}
}
