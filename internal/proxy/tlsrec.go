package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/weftmesh/weft/internal/detect"
	"github.com/weftmesh/weft/internal/sockio"
)

// The mTLS data path between proxies. crypto/tls writes every record (at
// most 16 KiB of plaintext) with its own write(2) and reads the socket one
// record at a time, so an opaque copy through a tls.Conn cost a syscall,
// and on loopback and veth a packet through the whole receive path
// (netfilter included), per 16 KiB each way. recConn sits under each
// tls.Conn between proxies; the opaque copy loops (pipe) switch it to
// batches of up to bulkBuf bytes: records encrypted from one read are
// written with one write, and decrypted records are gathered until the
// next socket read would be needed, then written with one write. The
// pooled HTTP/1 client gathers a bodiless request's records the same way
// and sends them with one write that then waits for the answer
// (h1Conn.flushAwait). Every other user of the connection (handshakes,
// the other HTTP paths) sees it pass reads and writes straight through.

// bulkBuf is the batch of one opaque copy step through mTLS: 4 records
// (256 KiB moved no more in the bench, for more CPU and memory).
const bulkBuf = 64 << 10

// maxRecordPlaintext is the most plaintext one TLS record carries.
const maxRecordPlaintext = 16 << 10

var (
	bulkBufs    = sync.Pool{New: func() any { b := make([]byte, bulkBuf); return &b }}
	bulkBufsOut atomic.Int64 // taken and not returned: none while every copy is idle
)

func getBulk() *[]byte {
	bulkBufsOut.Add(1)
	return bulkBufs.Get().(*[]byte)
}

func putBulk(b *[]byte) {
	bulkBufsOut.Add(-1)
	bulkBufs.Put(b)
}

// readPooled reads from rc into a batch buffer taken only once the socket
// has something to read (or an error or EOF to report): a copy waiting on
// an idle connection holds no buffer. b is nil when n is 0.
func readPooled(rc syscall.RawConn, max int) (b *[]byte, n int, err error) {
	var serr error
	err = rc.Read(func(fd uintptr) bool {
		buf := getBulk()
		var errno syscall.Errno
		n, errno = sockio.ReadFD(fd, (*buf)[:max])
		serr = nil
		if errno != 0 {
			serr = errno
		}
		if serr == syscall.EAGAIN {
			putBulk(buf)
			n = 0        // rc.Read may give up waiting (closed, deadline)
			return false // wait until readable
		}
		if n > 0 {
			b = buf
		} else {
			putBulk(buf)
			n = 0
		}
		return true
	})
	switch {
	case err != nil:
	case serr != nil:
		err = os.NewSyscallError("read", serr)
	case n == 0:
		err = io.EOF
	}
	return b, n, err
}

// rawConnOf is c's socket for readPooled, nil when c is not a socket (or
// still has bytes peeked by protocol detection to yield).
func rawConnOf(c net.Conn) syscall.RawConn {
	if dc, ok := c.(*detect.Conn); ok {
		if len(dc.Peeked()) > 0 {
			return nil
		}
		c = dc.Underlying()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// recConn is the connection under a tls.Conn between proxies.
type recConn struct {
	net.Conn

	// Reads: only the goroutine reading the tls.Conn touches these (the
	// tls.Conn serializes its reads).
	rbuf        *[]byte // bulk mode: bytes read from the socket, rbuf[r:w] unread
	r, w        int
	rerr        error           // an error that came with the last bytes read
	beforeBlock func() error    // bulk mode: runs before each socket read
	raw         syscall.RawConn // bulk mode's socket (nil: read through Conn)
	rawChecked  bool
	// probing: a read that would wait for the socket fails at once with
	// os.ErrDeadlineExceeded (temporary: the tls.Conn stays usable), as it
	// would with a deadline in the past, without setting one (probe).
	probing bool

	mu       sync.Mutex // writes: corked, flushing and wbuf
	corked   bool
	flushing bool   // uncork is writing; later writes queue in wbuf
	wbuf     []byte // held writes
}

func newRecConn(c net.Conn) *recConn { return &recConn{Conn: c} }

// recConnOf is the recConn under tc, if any.
func recConnOf(tc *tls.Conn) *recConn {
	rc, _ := tc.NetConn().(*recConn)
	return rc
}

func (c *recConn) Read(p []byte) (int, error) {
	if c.r == c.w {
		if c.rerr != nil {
			err := c.rerr
			c.rerr = nil
			return 0, err
		}
		if c.probing {
			return 0, os.ErrDeadlineExceeded
		}
		if c.beforeBlock == nil {
			return c.Conn.Read(p)
		}
		if err := c.beforeBlock(); err != nil {
			return 0, err
		}
		if !c.rawChecked {
			c.raw, c.rawChecked = rawConnOf(c.Conn), true
		}
		if c.raw != nil {
			b, n, err := readPooled(c.raw, bulkBuf)
			if n == 0 {
				return 0, err
			}
			c.rbuf, c.r, c.w = b, 0, n
		} else {
			c.rbuf = getBulk()
			n, err := c.Conn.Read(*c.rbuf)
			c.r, c.w, c.rerr = 0, n, err
			if n == 0 {
				c.rerr = nil
				c.releaseRead()
				return 0, err
			}
		}
	}
	n := copy(p, (*c.rbuf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.releaseRead()
	}
	return n, nil
}

// releaseRead returns the drained read buffer to the pool.
func (c *recConn) releaseRead() {
	if c.rbuf != nil {
		putBulk(c.rbuf)
	}
	c.rbuf, c.r, c.w = nil, 0, 0
}

// probe reads tc, the tls.Conn over c, without waiting for its socket:
// what tc holds already (records read with earlier ones), nothing more.
// A read with a deadline in the past does the same, at the cost of two
// deadline changes and three allocations. Only the goroutine reading tc
// may call it.
func (c *recConn) probe(tc *tls.Conn, p []byte) (int, error) {
	c.probing = true
	defer func() { c.probing = false }()
	return tc.Read(p)
}

// buffered is how many bytes read from the socket the tls.Conn has not
// taken yet (only the reading goroutine may ask).
func (c *recConn) buffered() int { return c.w - c.r }

// bulkReads makes reads fill a buffer of bulkBuf bytes per socket read and
// run flush before each, until the returned function ends it. Only the
// goroutine reading the tls.Conn may call it.
func (c *recConn) bulkReads(flush func() error) (end func()) {
	c.beforeBlock = flush
	return func() { c.beforeBlock = nil }
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked || c.flushing {
		// Held, or queued behind a batch being written: in order, and
		// without blocking a tls.Conn.Close (its close_notify) on a write
		// the peer is not reading (Close skips the alert only while a
		// tls.Conn.Write is in flight, and uncork's write is not one).
		c.wbuf = append(c.wbuf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

// cork holds writes until uncork. buf is the (empty) buffer to gather
// them in.
func (c *recConn) cork(buf []byte) {
	c.mu.Lock()
	c.corked, c.wbuf = true, buf[:0]
	c.mu.Unlock()
}

// uncork writes what was held with one write, then whatever was queued
// meanwhile, and passes writes through again. It returns the buffer given
// to cork (possibly grown).
func (c *recConn) uncork() ([]byte, error) {
	return c.uncorkAwait(false, nil)
}

// uncorkAwait is uncork; with await, the held bytes go out with
// sockio.Conn.WriteAwait (when the socket is one): the call returns when
// the peer's answer starts to arrive. Writes queued meanwhile (a
// close_notify) follow it; once the held bytes are out, a failure of
// those is not this call's (the request went out; its answer is read
// next). When the socket had something to read already, the held bytes
// and the queued ones are dropped and pendingErr returned (the tls.Conn
// counted records that never left: the caller must close it), or with
// pendingErr nil written as uncork writes them.
func (c *recConn) uncorkAwait(await bool, pendingErr error) ([]byte, error) {
	c.mu.Lock()
	b := c.wbuf
	c.corked, c.flushing, c.wbuf = false, true, nil
	c.mu.Unlock()
	var err error
	if len(b) > 0 {
		if s, ok := c.Conn.(*sockio.Conn); ok && await {
			var pending bool
			_, pending, err = s.WriteAwait(b)
			if pending && pendingErr != nil {
				err = pendingErr
			} else if pending {
				_, err = c.Conn.Write(b)
			}
		} else {
			_, err = c.Conn.Write(b)
		}
	}
	sent := await && err == nil
	c.mu.Lock()
	for len(c.wbuf) > 0 && err == nil {
		q := c.wbuf
		c.wbuf = nil
		c.mu.Unlock()
		_, err = c.Conn.Write(q)
		c.mu.Lock()
	}
	c.flushing, c.wbuf = false, nil
	c.mu.Unlock()
	if sent {
		err = nil
	}
	return b[:0], err
}

// SyscallConn exposes the socket (h1Client peeks at it for a close).
func (c *recConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// copyBulk copies src to dst when one of them is a tls.Conn between
// proxies (over a recConn): reads of up to bulkBuf from the plaintext side
// are encrypted into records written with one write; records read from the
// TLS side are decrypted into a buffer written out with one write whenever
// the next socket read is due. ok is false when neither side is such a
// connection (the caller copies as before).
func copyBulk(dst, src net.Conn) (n int64, ok bool, err error) {
	if tc, isTLS := dst.(*tls.Conn); isTLS {
		if rc := recConnOf(tc); rc != nil {
			n, err = encryptBulk(tc, rc, src)
			return n, true, err
		}
	}
	if tc, isTLS := src.(*tls.Conn); isTLS {
		if rc := recConnOf(tc); rc != nil {
			n, err = decryptBulk(dst, tc, rc)
			return n, true, err
		}
	}
	return 0, false, nil
}

// encryptBulk copies plaintext src into tc: one read, its records, one
// write. Buffers are held only while bytes flow when src is a socket.
func encryptBulk(tc *tls.Conn, rc *recConn, src net.Conn) (int64, error) {
	raw := rawConnOf(src)
	var n int64
	for {
		var in *[]byte
		var m int
		var rerr error
		if raw != nil {
			// Room in a batch buffer for the records' headers and tags
			// (22 bytes each).
			in, m, rerr = readPooled(raw, bulkBuf-1024)
		} else {
			in = getBulk()
			m, rerr = src.Read((*in)[:bulkBuf-1024])
		}
		if m > 0 {
			out := getBulk()
			rc.cork((*out)[:0])
			_, werr := tc.Write((*in)[:m])
			// The plaintext is in the records now: give its buffer back
			// before a write that may wait on the peer's window.
			putBulk(in)
			in = nil
			_, ferr := rc.uncork()
			putBulk(out)
			if werr = firstErr(werr, ferr); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if in != nil {
			putBulk(in)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// decryptBulk copies tc's plaintext to dst, writing what the records of
// one socket read held with one write. While the connection is idle it
// waits with a one-record buffer, and no batch buffer.
func decryptBulk(dst io.Writer, tc *tls.Conn, rc *recConn) (_ int64, err error) {
	small := make([]byte, maxRecordPlaintext)
	var buf *[]byte
	var n int64
	// (*buf)[start:filled] is decrypted and not yet written. A flush from
	// inside tc.Read (before its socket read) must not move where that
	// Read is writing, so it only advances start.
	start, filled := 0, 0
	flush := func() error {
		if start == filled {
			return nil
		}
		m, err := dst.Write((*buf)[start:filled])
		n += int64(m)
		start = filled
		if err != nil {
			return &writeError{err}
		}
		return nil
	}
	end := rc.bulkReads(flush)
	defer func() {
		end()
		if buf != nil {
			putBulk(buf)
		}
		if err != nil {
			// The copy is over (the app's side failed, or the
			// connection): what is left of the last socket read
			// will not be read, and its buffer goes back now, not
			// when the connection is collected.
			rc.releaseRead()
		}
	}()
	for {
		var m int
		var rerr error
		if rc.buffered() == 0 {
			// The next record probably needs the socket: write out what
			// there is and wait without a batch buffer.
			if err := flush(); err != nil {
				return n, err.(*writeError).err
			}
			if buf != nil {
				putBulk(buf)
				buf, start, filled = nil, 0, 0
			}
			m, rerr = tc.Read(small)
			if m > 0 {
				buf = getBulk()
				start, filled = 0, copy(*buf, small[:m])
			}
		} else {
			if buf == nil {
				buf, start, filled = getBulk(), 0, 0
			}
			if len(*buf)-filled < maxRecordPlaintext {
				if err := flush(); err != nil {
					return n, err.(*writeError).err
				}
			}
			if start == filled {
				start, filled = 0, 0
			}
			m, rerr = tc.Read((*buf)[filled:])
			filled += m
		}
		if rerr != nil {
			var we *writeError
			if errors.As(rerr, &we) {
				return n, we.err
			}
			if err := flush(); err != nil {
				return n, err.(*writeError).err
			}
			if rerr == io.EOF {
				return n, nil
			}
			return n, rerr
		}
	}
}

// writeError marks a failed write to the plaintext side, made from inside
// a tls.Conn read (recConn's beforeBlock), to tell it from a read error.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }
