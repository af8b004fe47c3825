package proxy

import (
	"io"
	"net/http"
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
