package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// The mTLS data path between proxies. crypto/tls writes every record (at
// most 16 KiB of plaintext) with its own write(2) and reads the socket one
// record at a time, so an opaque copy through a tls.Conn cost a syscall,
// and on loopback and veth a packet through the whole receive path
// (netfilter included), per 16 KiB each way. recConn sits under each
// tls.Conn between proxies; the opaque copy loops (pipe) switch it to
// batches of up to bulkBuf bytes: records encrypted from one read are
// written with one write, and decrypted records are gathered until the
// next socket read would be needed, then written with one write. Every
// other user of the connection (handshakes, the HTTP paths) sees it pass
// reads and writes straight through.

// bulkBuf is the batch of one opaque copy step through mTLS: 16 records.
const bulkBuf = 256 << 10

// maxRecordPlaintext is the most plaintext one TLS record carries.
const maxRecordPlaintext = 16 << 10

var bulkBufs = sync.Pool{New: func() any { b := make([]byte, bulkBuf); return &b }}

// recConn is the connection under a tls.Conn between proxies.
type recConn struct {
	net.Conn

	// Reads: only the goroutine reading the tls.Conn touches these (the
	// tls.Conn serializes its reads).
	rbuf        *[]byte // bulk mode: bytes read from the socket, rbuf[r:w] unread
	r, w        int
	rerr        error        // an error that came with the last bytes read
	beforeBlock func() error // bulk mode: runs before each socket read

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
		if c.beforeBlock == nil {
			return c.Conn.Read(p)
		}
		if err := c.beforeBlock(); err != nil {
			return 0, err
		}
		if c.rbuf == nil {
			c.rbuf = bulkBufs.Get().(*[]byte)
		}
		n, err := c.Conn.Read(*c.rbuf)
		c.r, c.w, c.rerr = 0, n, err
		if n == 0 {
			c.rerr = nil
			return 0, err
		}
	}
	n := copy(p, (*c.rbuf)[c.r:c.w])
	c.r += n
	if c.r == c.w && c.beforeBlock == nil { // bulk mode ended with bytes left
		bulkBufs.Put(c.rbuf)
		c.rbuf, c.r, c.w = nil, 0, 0
	}
	return n, nil
}

// bulkReads makes reads fill a buffer of bulkBuf bytes per socket read and
// run flush before each, until the returned function ends it. Only the
// goroutine reading the tls.Conn may call it.
func (c *recConn) bulkReads(flush func() error) (end func()) {
	c.beforeBlock = flush
	return func() {
		c.beforeBlock = nil
		if c.rbuf != nil && c.r == c.w {
			bulkBufs.Put(c.rbuf)
			c.rbuf, c.r, c.w = nil, 0, 0
		}
	}
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
	c.mu.Lock()
	b := c.wbuf
	c.corked, c.flushing, c.wbuf = false, true, nil
	c.mu.Unlock()
	var err error
	if len(b) > 0 {
		_, err = c.Conn.Write(b)
	}
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
// write.
func encryptBulk(tc *tls.Conn, rc *recConn, src io.Reader) (int64, error) {
	in := bulkBufs.Get().(*[]byte)
	defer bulkBufs.Put(in)
	out := bulkBufs.Get().(*[]byte)
	defer bulkBufs.Put(out)
	wbuf := (*out)[:0]
	// Room in wbuf for the records' headers and tags (22 bytes each).
	rd := (*in)[:bulkBuf-1024]
	var n int64
	for {
		m, rerr := src.Read(rd)
		if m > 0 {
			rc.cork(wbuf)
			_, werr := tc.Write(rd[:m])
			b, ferr := rc.uncork()
			wbuf = b
			if werr = firstErr(werr, ferr); werr != nil {
				return n, werr
			}
			n += int64(m)
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
// one socket read held with one write.
func decryptBulk(dst io.Writer, tc *tls.Conn, rc *recConn) (int64, error) {
	out := bulkBufs.Get().(*[]byte)
	defer bulkBufs.Put(out)
	buf := *out
	var n int64
	// buf[start:filled] is decrypted and not yet written. A flush from
	// inside tc.Read (before its socket read) must not move where that
	// Read is writing, so it only advances start.
	start, filled := 0, 0
	flush := func() error {
		if start == filled {
			return nil
		}
		m, err := dst.Write(buf[start:filled])
		n += int64(m)
		start = filled
		if err != nil {
			return &writeError{err}
		}
		return nil
	}
	end := rc.bulkReads(flush)
	defer end()
	for {
		if len(buf)-filled < maxRecordPlaintext {
			if err := flush(); err != nil {
				return n, err.(*writeError).err
			}
		}
		if start == filled {
			start, filled = 0, 0
		}
		m, rerr := tc.Read(buf[filled:])
		filled += m
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
