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
	buf      *[]byte   // bytes given and not yet written (nil: none)
	flushing bool      // a flush goroutine (or a direct write) owns the socket
	closed   bool
	err      error // the first failed write
}

// batchBufs holds batch buffers between batches, shared by all
// connections: an idle connection keeps none, and the writes arriving
// while a batch is written go into a buffer from here, not into one grown
// by append from nothing (which made a third of the inbound proxy's
// allocated bytes in the h2 mTLS pair).
var batchBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, batchInitial)
	return &b
}}

// pending is how many bytes are buffered; b.mu is held.
func (b *batchConn) pending() int {
	if b.buf == nil {
		return 0
	}
	return len(*b.buf)
}

// putBatchBuf returns a written buffer to batchBufs, unless it grew larger
// than batchKeep.
func putBatchBuf(buf *[]byte) {
	if cap(*buf) > batchKeep {
		return
	}
	*buf = (*buf)[:0]
	batchBufs.Put(buf)
}

const (
	// batchMaxPending bounds the bytes a connection buffers: a write that
	// finds this many waits for the flush.
	batchMaxPending = 256 << 10
	// batchDirect is the size from which a write into an idle connection
	// is not copied but written by its caller.
	batchDirect = 16 << 10
	// batchInitial is the capacity of a new batch buffer: a few frames.
	batchInitial = 4 << 10
	// batchKeep is the largest buffer kept for reuse (batchBufs): one
	// that held a full batch (batchMaxPending and a write beside it);
	// larger ones are dropped after their flush. An idle proxy holds none
	// for long: the garbage collector empties the pool.
	batchKeep = 2 * batchMaxPending
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
	for b.err == nil && !b.closed && b.pending() >= batchMaxPending {
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
		if b.buf != nil && b.err == nil {
			go b.flush(false) // writes queued behind this one
		} else {
			b.flushing = false
			b.drained.Broadcast()
		}
		b.mu.Unlock()
		return n, err
	}
	if b.buf == nil {
		b.buf = batchBufs.Get().(*[]byte)
	}
	*b.buf = append(*b.buf, p...)
	if !b.flushing {
		b.flushing = true
		go b.flush(true)
	}
	b.mu.Unlock()
	return len(p), nil
}

// flush writes the buffer until none is left, after yielding once if
// yield (so that runnable goroutines add to the batch). Writes that arrive
// during a write to the socket go to a new buffer, written next.
func (b *batchConn) flush(yield bool) {
	if yield {
		runtime.Gosched()
	}
	b.mu.Lock()
	for b.buf != nil && b.err == nil {
		out := b.buf
		b.buf = nil
		b.drained.Broadcast() // room for writers waiting on a full buffer
		b.mu.Unlock()
		_, err := b.Conn.Write(*out)
		putBatchBuf(out)
		b.mu.Lock()
		b.wrote(err)
		b.drained.Broadcast()
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
	b.buf = nil
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
