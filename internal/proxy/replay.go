package proxy

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"time"
)

// replayBody lets a request body be sent more than once (retries, mirror
// copies) without delaying the first attempt: the first attempt streams
// the client's body and records up to maxReplayBody bytes; once the body
// has been read to its end within that size, later attempts replay it.
type replayBody struct {
	src io.ReadCloser

	mu       sync.Mutex
	buf      []byte
	eof      bool
	overflow bool
	started  bool
}

// newReplayBody wraps r's body; nil for a bodiless request.
func newReplayBody(r *http.Request) *replayBody {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && r.ProtoMajor == 1 && r.TransferEncoding == nil {
		return nil
	}
	return &replayBody{src: r.Body, overflow: r.ContentLength > maxReplayBody}
}

// attempt returns the body of the next attempt: the recording stream the
// first time, the recorded bytes afterwards (only when replayable).
func (b *replayBody) attempt() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		b.started = true
		return recorder{b}
	}
	return io.NopCloser(bytes.NewReader(b.buf))
}

// replayable reports whether the whole body has been recorded.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof && !b.overflow
}

type recorder struct{ b *replayBody }

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.b.src.Read(p)
	r.b.mu.Lock()
	if !r.b.overflow {
		if len(r.b.buf)+n > maxReplayBody {
			r.b.overflow, r.b.buf = true, nil
		} else {
			r.b.buf = append(r.b.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		r.b.eof = true
	}
	r.b.mu.Unlock()
	return n, err
}

// Close leaves the client's body to the server, which closes it.
func (recorder) Close() error { return nil }

// idleBody cancels a response whose body stays silent longer than d.
type idleBody struct {
	io.ReadCloser
	t *time.Timer
	d time.Duration
}

func newIdleBody(rc io.ReadCloser, d time.Duration, cancel func()) *idleBody {
	return &idleBody{ReadCloser: rc, t: time.AfterFunc(d, cancel), d: d}
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.t.Reset(b.d)
	return n, err
}

func (b *idleBody) Close() error {
	b.t.Stop()
	return b.ReadCloser.Close()
}
