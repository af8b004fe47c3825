// Package sockio reads and writes TCP sockets without the Go scheduler's
// syscall bookkeeping.
//
// Go's net package makes every read(2) and write(2) through
// syscall.Syscall, which tells the scheduler a syscall may block. When the
// process was idle, the first such syscall also wakes the runtime's
// monitor thread (sysmon) out of its deep sleep, with a futex wake and a
// context switch, and the monitor then polls at 20 µs for a while. A
// sidecar at a moderate request rate goes idle between requests, so it
// paid that on almost every request: about one monitor wake-up per
// request and a tenth of the proxy's CPU at 1,000 requests per second
// (issue 17, bench/results/issue17.md).
//
// The sockets are non-blocking: a read or write returns at once, with
// EAGAIN when it would block, and then the caller waits in Go's network
// poller as before (syscall.RawConn). So the syscall itself can be raw.
// Conn does that; deadlines, Close, and everything *net.TCPConn does
// besides Read and Write are the socket's own. Two more calls save
// syscalls a proxy would otherwise make per request: WriteAwait (a look
// for a close, a request's write, then a wait for its answer without the
// read that would find nothing yet) and Peek (a look for a close,
// allocating nothing).
package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a *net.TCPConn whose Read and Write make raw syscalls.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu     sync.Mutex // one Read at a time: rp, rn, rerrno
	rp      []byte
	rn      int
	rerrno  syscall.Errno
	readFn  func(fd uintptr) bool // c.read, bound once: no allocation per Read
	wmu     sync.Mutex            // one Write at a time: wp, wn, werrno, wzero
	wp      []byte
	wn      int
	werrno  syscall.Errno
	wzero   bool // write(2) returned 0 with no error
	writeFn func(fd uintptr) bool

	// WriteAwait's state, under wmu (its callback runs inside a RawConn
	// Read, which also serializes it with Read and Peek).
	awaitStep int
	peekByte  [1]byte
	awaitFn   func(fd uintptr) bool
	peekFn    func(fd uintptr) bool // Peek's, under rmu with rp, rn, rerrno
}

// WriteAwait's steps: its callback has not run yet, found something to
// read already (and wrote nothing), has written all and waits, or has
// stopped short of waiting (EAGAIN mid-write, or an error).
const (
	awaitNotRun = iota
	awaitPending
	awaitWaiting
	awaitStopped
)

// maxWrite bounds one write(2). On loopback and veth the kernel runs the
// receiver's whole path (netfilter, TCP) inside the sender's write, and a
// raw syscall cannot be stopped for a garbage collection: a bounded write
// lets one happen between two.
const maxWrite = 256 << 10

// noop is the callback of a zero-length Read or Write: the socket's own
// checks (closed, past deadline) still apply, as net's do.
func noop(uintptr) bool { return true }

// Wrap returns c as a *Conn when it is a *net.TCPConn, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Conn{TCPConn: tc, rc: rc}
	s.readFn, s.writeFn, s.awaitFn, s.peekFn = s.read, s.write, s.await, s.peek
	return s
}

// Unwrap returns the *net.TCPConn under c (for splice(2), which only
// io.Copy between two *net.TCPConn does), or c itself.
func Unwrap(c net.Conn) net.Conn {
	if s, ok := c.(*Conn); ok {
		return s.TCPConn
	}
	return c
}

// Read reads as (*net.TCPConn).Read does: the same results and errors.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if err := c.rc.Read(noop); err != nil {
			return 0, c.opError("read", unwrapRaw(err))
		}
		return 0, nil
	}
	c.rmu.Lock()
	c.rp, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rp = nil
	c.rmu.Unlock()
	switch {
	case err != nil: // closed, or the deadline passed while waiting
		return 0, c.opError("read", unwrapRaw(err))
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p unless an error stops it, as (*net.TCPConn).Write.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		if err := c.rc.Write(noop); err != nil {
			return 0, c.opError("write", unwrapRaw(err))
		}
		return 0, nil
	}
	c.wmu.Lock()
	c.wp, c.wn, c.werrno, c.wzero = p, 0, 0, false
	err := c.rc.Write(c.writeFn)
	n, errno, zero := c.wn, c.werrno, c.wzero
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", unwrapRaw(err))
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case zero:
		return n, c.opError("write", io.ErrUnexpectedEOF)
	}
	return n, nil
}

// WriteAwait writes p as Write does and then, when all of it went out at
// once, waits until c has something to read (bytes, EOF, an error) or its
// read deadline passes or it is closed, without reading: for a request
// whose answer is read next. The read that would find nothing yet
// (EAGAIN) before waiting is skipped: one syscall fewer per exchange, and
// a syscall is the dearest thing a proxy does per request (issue 17). An
// error met while waiting is left to the next Read to report.
//
// The wait starts before the write, in the same RawConn Read, whose first
// step forgets any readiness the poller noted before: so an answer that
// comes at once is not missed, and what arrived before cannot wake the
// wait. WriteAwait therefore first looks at the socket (MSG_PEEK), after
// that step: when it already has something to read (bytes, EOF, an
// error), nothing is written and pending is true, for the caller to
// decide (a pooled connection is stale; else Write). That look is the
// syscall a pooled client makes before reuse anyway.
//
// Only with no other Read or Write in progress on c: a Read would hold
// the write back until it ends, and other Writes wait for the answer.
func (c *Conn) WriteAwait(p []byte) (n int, pending bool, err error) {
	if len(p) == 0 {
		n, err := c.Write(p)
		return n, false, err
	}
	// The write deadline and a close, as Write checks them (no syscall).
	if err := c.rc.Write(noop); err != nil {
		return 0, false, c.opError("write", unwrapRaw(err))
	}
	c.wmu.Lock()
	c.wp, c.wn, c.werrno, c.wzero, c.awaitStep = p, 0, 0, false, awaitNotRun
	c.rc.Read(c.awaitFn) // its error (a deadline or close while waiting) is the next Read's
	n, errno, zero, step := c.wn, c.werrno, c.wzero, c.awaitStep
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case step == awaitPending:
		return 0, true, nil
	case step == awaitNotRun: // closed, or past the read deadline: as Write decides
		n, err := c.Write(p)
		return n, false, err
	case errno != 0:
		return n, false, c.opError("write", os.NewSyscallError("write", errno))
	case zero:
		return n, false, c.opError("write", io.ErrUnexpectedEOF)
	case n < len(p): // the socket's buffer filled: the rest as Write does
		m, err := c.Write(p[n:])
		return n + m, false, err
	}
	return n, false, nil
}

// await is WriteAwait's callback: the first call looks for anything
// already there, then writes (and asks to wait for a read unless the
// write stopped short); the second is the socket readable.
func (c *Conn) await(fd uintptr) bool {
	if c.awaitStep != awaitNotRun {
		return true
	}
	if _, errno := PeekFD(fd, c.peekByte[:]); errno != syscall.EAGAIN {
		c.awaitStep = awaitPending
		return true
	}
	if !c.write(fd) || c.werrno != 0 || c.wzero {
		c.awaitStep = awaitStopped
		return true
	}
	c.awaitStep = awaitWaiting
	return false
}

// Peek looks at what c has to read without taking it and without
// waiting (recvfrom with MSG_PEEK|MSG_DONTWAIT): n > 0 bytes, or 0 and no
// errno at EOF, or EAGAIN when there is nothing yet; err when c is closed.
// Unlike PeekFD through SyscallConn it allocates nothing.
func (c *Conn) Peek(p []byte) (int, syscall.Errno, error) {
	if len(p) == 0 {
		return 0, 0, nil
	}
	c.rmu.Lock()
	c.rp, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.peekFn)
	n, errno := c.rn, c.rerrno
	c.rp = nil
	c.rmu.Unlock()
	if err != nil {
		return 0, 0, c.opError("read", unwrapRaw(err))
	}
	return n, errno, nil
}

func (c *Conn) peek(fd uintptr) bool {
	c.rn, c.rerrno = PeekFD(fd, c.rp)
	return true
}

// read is one attempt: false (wait until readable) on EAGAIN.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, c.rp)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = n, errno
		return true
	}
}

// write writes until done, an error, or EAGAIN (false: wait until
// writable, then go on).
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wp) {
		n, errno := rawWrite(fd, c.wp[c.wn:min(len(c.wp), c.wn+maxWrite)])
		switch errno {
		case 0:
			if n == 0 { // as net's: not a success, and no progress to wait for
				c.wzero = true
				return true
			}
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = errno
			return true
		}
	}
	return true
}

// ReadFrom copies r to c: spliced (splice(2)) when r is a TCP connection,
// as (*net.TCPConn).ReadFrom does; else through c's Write.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	switch src := r.(type) {
	case *Conn:
		return c.TCPConn.ReadFrom(src.TCPConn)
	case *net.TCPConn:
		return c.TCPConn.ReadFrom(src)
	}
	return io.Copy(writerOnly{c}, r)
}

// WriteTo copies c to w through c's Read (or, into a TCP connection, as
// that connection's ReadFrom does).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, readerOnly{c})
}

// writerOnly and readerOnly hide ReadFrom and WriteTo from io.Copy.
type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// unwrapRaw takes the error of a RawConn's Read or Write (an *OpError
// named raw-read or raw-write) back to its cause: net.ErrClosed or
// os.ErrDeadlineExceeded, as a plain Read or Write reports them.
func unwrapRaw(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Err
	}
	return err
}

var _ net.Conn = (*Conn)(nil)

// ReadFD reads a non-blocking socket as Conn.Read does, for callers that
// hold its RawConn (EINTR retried; EAGAIN returned, to wait on).
func ReadFD(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, errno := rawRead(fd, p)
		if errno != syscall.EINTR {
			return n, errno
		}
	}
}

// PeekFD looks at what a socket has to read without taking it and
// without blocking (recvfrom with MSG_PEEK|MSG_DONTWAIT): n > 0, or 0 and
// no error at EOF, or EAGAIN when there is nothing.
func PeekFD(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, errno := rawPeek(fd, p)
		if errno != syscall.EINTR {
			return n, errno
		}
	}
}
