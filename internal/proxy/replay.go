package proxy

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// replayBody lets a request body be sent more than once (retries, mirror
// copies) without delaying the first attempt: the first attempt streams
// the client's body and records up to maxReplayBody bytes; once the body
// has been read to its end within that size, later attempts replay it.
type replayBody struct {
	src io.ReadCloser

	mu  sync.Mutex // held across reads of src: the recorder and complete take turns
	buf []byte     // the body as recorded for replays (while !overflow)
	// ahead holds what replayable read from src that the first attempt
	// has not been given yet (kept even when the body overflows, so the
	// first attempt never loses bytes; at most maxReplayBody + one read).
	ahead    []byte
	eof      bool
	overflow bool // larger than maxReplayBody, or the client's body failed
	started  bool
	recorded atomic.Bool // eof && !overflow
}

// newReplayBody wraps r's body; nil for a bodiless request.
func newReplayBody(r *http.Request) *replayBody {
	if r.Body == nil || r.Body == http.NoBody {
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
		return &recorder{b: b}
	}
	return io.NopCloser(bytes.NewReader(b.buf))
}

// readLocked reads from the client's body and records what it read.
func (b *replayBody) readLocked(p []byte) (int, error) {
	n, err := b.src.Read(p)
	if !b.overflow {
		if len(b.buf)+n > maxReplayBody {
			b.overflow, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.overflow, b.buf = true, nil
	}
	b.recorded.Store(b.eof && !b.overflow)
	return n, err
}

// replayable reports whether the whole body is recorded. An attempt may
// end (a response, a refused connection) before its body was read to the
// end; then the rest is read here, waiting at most wait for the client
// to finish sending it (a streaming client is not replayable).
func (b *replayBody) replayable(wait time.Duration) bool {
	done := make(chan bool, 1)
	go func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		var tmp [4096]byte
		for !b.eof && !b.overflow {
			n, _ := b.readLocked(tmp[:])
			b.ahead = append(b.ahead, tmp[:n]...)
		}
		done <- b.eof && !b.overflow
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case ok := <-done:
		return ok
	case <-t.C:
		return false
	}
}

// recorder is the first attempt's body: what replayable already read
// ahead (when no attempt got to read it), then the client's body.
// complete reports, without waiting (a read may hold the lock), whether
// the whole body is recorded.
func (b *replayBody) complete() bool { return b.recorded.Load() }

type recorder struct{ b *replayBody }

func (r *recorder) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.ahead) > 0 {
		n := copy(p, b.ahead)
		b.ahead = b.ahead[n:]
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	return b.readLocked(p)
}

// Close leaves the client's body to the server, which closes it.
func (*recorder) Close() error { return nil }

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
