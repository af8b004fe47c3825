package proxy

import (
	"net"
	"runtime"
	"sync"
	"time"
)

// Go's HTTP/2 code writes every frame batch to its connection as soon as it
// has it: the server's serve loop flushes whenever its queue is empty (from
// a goroutine per flush), the client writes each request's HEADERS under
// its write lock and flushes. Between two proxies carrying many streams that
// is a write syscall (and a TLS record) per request and per response on each
// side: at max rate (strace), 2.2–2.3 writes per request on each proxy of
// the h2 mTLS pair, against 0.26–0.41 for haproxy's pair, which writes the
// frames of many streams at once (bench/results/issue17.md, "HTTP/2 writes
// gathered").
//
// batchConn gathers the writes of one HTTP/2 connection and sends them
// together: a write is copied into a buffer and returns, and the first
// write into an empty buffer starts a flush that yields the processor
// before it writes, so every goroutine already runnable (the other streams'
// handlers woken by the same read, the serve loop) adds its frames first;
// then the buffer goes out in one write. With nothing else runnable the
// flush runs at once: a lone request or response waits one goroutine
// switch, not a timer. Bytes are written in the order they were given.
//
// The buffer is bounded (batchMaxPending bytes wait beside the batch being
// written; writers wait beyond that, as on a full socket), a write of batchDirect bytes or more into an
// idle connection goes straight to the socket without a copy (bulk bodies),
// and a failed write closes the connection: HTTP/2 cannot go on after lost
// frames, and the error is returned by the next write. Close writes what is
// buffered first (a GOAWAY, a last RST_STREAM), waiting at most
// batchCloseTimeout for a socket that does not drain.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	drained  sync.Cond // a flush wrote a batch, or ended
	buf      []byte    // bytes given and not yet written
	spare    []byte    // the previous batch's buffer, for reuse
	flushing bool      // a flush goroutine (or a direct write) owns the socket
	closed   bool
	err      error // the first failed write
}

const (
	// batchMaxPending bounds the bytes a connection buffers: a write that
	// finds this many waits for the flush.
	batchMaxPending = 256 << 10
	// batchDirect is the size from which a write into an idle connection
	// is not copied but written by its caller.
	batchDirect = 16 << 10
	// batchKeep is the largest buffer kept for reuse while a connection
	// is idle; larger ones are dropped after their flush.
	batchKeep = 16 << 10
	// batchCloseTimeout bounds how long Close waits for buffered bytes to
	// reach a socket that does not drain.
	batchCloseTimeout = time.Second
)

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c}
	b.drained.L = &b.mu
	return b
}

// Write buffers p for the connection's next flush (or writes it directly:
// see batchDirect). Its error is that of an earlier write that failed, or
// net.ErrClosed after Close.
func (b *batchConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	for b.err == nil && !b.closed && len(b.buf) >= batchMaxPending {
		b.drained.Wait()
	}
	switch {
	case b.err != nil:
		err := b.err
		b.mu.Unlock()
		return 0, err
	case b.closed:
		b.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(p) >= batchDirect && !b.flushing {
		b.flushing = true
		b.mu.Unlock()
		n, err := b.Conn.Write(p)
		b.mu.Lock()
		b.wrote(err)
		if len(b.buf) > 0 && b.err == nil {
			go b.flush(false) // writes queued behind this one
		} else {
			b.flushing = false
			b.drained.Broadcast()
		}
		b.mu.Unlock()
		return n, err
	}
	if b.buf == nil && b.spare != nil {
		b.buf, b.spare = b.spare[:0], nil
	}
	b.buf = append(b.buf, p...)
	if !b.flushing {
		b.flushing = true
		go b.flush(true)
	}
	b.mu.Unlock()
	return len(p), nil
}

// flush writes the buffer until it is empty, after yielding once if yield
// (so that runnable goroutines add to the batch). Writes that arrive during
// a write to the socket go to the other buffer (spare).
func (b *batchConn) flush(yield bool) {
	if yield {
		runtime.Gosched()
	}
	b.mu.Lock()
	for len(b.buf) > 0 && b.err == nil {
		out := b.buf
		b.buf, b.spare = b.spare, nil
		if b.buf != nil {
			b.buf = b.buf[:0]
		}
		b.drained.Broadcast() // room for writers waiting on a full buffer
		b.mu.Unlock()
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.wrote(err)
		if cap(out) <= batchKeep && b.err == nil {
			b.spare = out[:0]
		}
		b.drained.Broadcast()
	}
	if len(b.buf) == 0 {
		// Idle: keep one small buffer for the next batch.
		if b.spare == nil && b.buf != nil && cap(b.buf) <= batchKeep {
			b.spare = b.buf[:0]
		}
		b.buf = nil
	}
	b.flushing = false
	b.drained.Broadcast()
	b.mu.Unlock()
}

// wrote records the result of a write to the socket; b.mu is held. A failed
// write closes the connection, so its reader fails too.
func (b *batchConn) wrote(err error) {
	if err == nil || b.err != nil {
		return
	}
	b.err = err
	b.buf, b.spare = nil, nil
	b.Conn.Close()
}

// Close writes what is buffered (waiting at most batchCloseTimeout) and
// closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.drained.Broadcast() // writers waiting for room give up
	if b.flushing && b.err == nil {
		b.Conn.SetWriteDeadline(time.Now().Add(batchCloseTimeout))
		for b.flushing {
			b.drained.Wait()
		}
	}
	b.mu.Unlock()
	return b.Conn.Close()
}
