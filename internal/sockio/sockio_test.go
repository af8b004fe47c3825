package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair is a connected loopback TCP pair: a (wrapped) and b (plain).
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(c).(*Conn)
	if !ok {
		if runtime.GOOS != "linux" {
			t.Skip("raw socket I/O is Linux only")
		}
		t.Fatalf("Wrap(%T) did not wrap", c)
	}
	t.Cleanup(func() { w.Close(); b.Close() })
	return w, b.(*net.TCPConn)
}

func TestReadWrite(t *testing.T) {
	a, b := pair(t)
	if n, err := a.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v; want 5, nil", n, err)
	}
	buf := make([]byte, 16)
	if n, err := io.ReadFull(b, buf[:5]); n != 5 || err != nil || string(buf[:5]) != "hello" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	b.Write([]byte("world"))
	n, err := a.Read(buf)
	if err != nil || string(buf[:n]) != "world" {
		t.Fatalf("Read = %q, %v; want world", buf[:n], err)
	}
	if n, err := a.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if n, err := a.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v; want 0, nil", n, err)
	}
}

// A Read waits for bytes (EAGAIN, then the poller) and ends at EOF.
func TestReadWaitsThenEOF(t *testing.T) {
	a, b := pair(t)
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.Write([]byte("late"))
		b.CloseWrite()
	}()
	got, err := io.ReadAll(a)
	if err != nil || string(got) != "late" {
		t.Fatalf("ReadAll = %q, %v; want late, nil", got, err)
	}
	if n, err := a.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, EOF", n, err)
	}
}

// A Write larger than the socket buffers waits for the peer (EAGAIN) and
// delivers every byte in order.
func TestWriteBackpressure(t *testing.T) {
	a, b := pair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := a.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		a.CloseWrite()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // the writer fills the buffers and waits
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("peer got %d bytes, want %d (equal: false)", len(got), len(want))
	}
}

// Deadlines and Close end waits with the errors net.Conn users test for.
func TestErrorsAsNet(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		a, _ := pair(t)
		a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := a.Read(make([]byte, 1))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline: %v; want a timeout (os.ErrDeadlineExceeded)", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("error %#v: want a *net.OpError for op read", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		a, _ := pair(t)
		big := make([]byte, 64<<20) // more than the socket buffers hold
		a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := a.Write(big) // the peer never reads
		if !errors.Is(err, os.ErrDeadlineExceeded) || n <= 0 || n >= 64<<20 {
			t.Fatalf("Write past its deadline = %d, %v; want some bytes and os.ErrDeadlineExceeded", n, err)
		}
	})
	t.Run("closed while reading", func(t *testing.T) {
		a, _ := pair(t)
		go func() { time.Sleep(20 * time.Millisecond); a.Close() }()
		if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed conn: %v; want net.ErrClosed", err)
		}
	})
	t.Run("reset by peer", func(t *testing.T) {
		a, b := pair(t)
		b.SetLinger(0)
		b.Write([]byte("x"))
		a.Read(make([]byte, 1))
		b.Close() // RST
		time.Sleep(20 * time.Millisecond)
		var err error
		for i := 0; i < 10 && err == nil; i++ {
			_, err = a.Write([]byte("y"))
			time.Sleep(5 * time.Millisecond)
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Write after the peer reset: %v; want ECONNRESET or EPIPE", err)
		}
		var se *os.SyscallError
		if !errors.As(err, &se) || se.Syscall != "write" {
			t.Fatalf("error %#v: want an *os.SyscallError for write", err)
		}
	})
}

// Reads and writes may run at once, as on any net.Conn.
func TestConcurrentReadWrite(t *testing.T) {
	a, b := pair(t)
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // echo on the plain side
		defer wg.Done()
		io.CopyN(b, b, n*8)
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			a.Write([]byte("pingpong"))
		}
	}()
	got, err := io.ReadAll(io.LimitReader(a, n*8))
	wg.Wait()
	if err != nil || len(got) != n*8 {
		t.Fatalf("read back %d bytes, %v; want %d", len(got), err, n*8)
	}
}

// Read and Write allocate nothing (the RawConn callbacks are bound once).
func TestNoAllocs(t *testing.T) {
	a, b := pair(t)
	buf := make([]byte, 64)
	msg := []byte("0123456789")
	allocs := testing.AllocsPerRun(200, func() {
		a.Write(msg)
		io.ReadFull(b, buf[:len(msg)])
		b.Write(msg)
		io.ReadFull(a, buf[:len(msg)])
	})
	// b is a plain *net.TCPConn: whatever it allocates is net's, not ours;
	// it allocates nothing either.
	if allocs != 0 {
		t.Fatalf("%.1f allocations per round trip, want 0", allocs)
	}
}

func TestPeekFD(t *testing.T) {
	a, b := pair(t)
	peek := func() (int, syscall.Errno) {
		var n int
		var errno syscall.Errno
		if err := a.rc.Read(func(fd uintptr) bool {
			n, errno = PeekFD(fd, make([]byte, 1))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return n, errno
	}
	if n, errno := peek(); n != 0 || errno != syscall.EAGAIN {
		t.Fatalf("peek on an idle socket = %d, %v; want 0, EAGAIN", n, errno)
	}
	b.Write([]byte("z"))
	time.Sleep(20 * time.Millisecond)
	if n, errno := peek(); n != 1 || errno != 0 {
		t.Fatalf("peek with a byte waiting = %d, %v; want 1, 0", n, errno)
	}
	buf := make([]byte, 1)
	if n, err := a.Read(buf); n != 1 || buf[0] != 'z' || err != nil {
		t.Fatalf("Read after peek = %q, %v; want the byte peeked", buf[:n], err)
	}
	b.Close()
	time.Sleep(20 * time.Millisecond)
	if n, errno := peek(); n != 0 || errno != 0 {
		t.Fatalf("peek at EOF = %d, %v; want 0, 0", n, errno)
	}
}

func TestWrapLeavesOthersAlone(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if got := Wrap(c1); got != c1 {
		t.Fatalf("Wrap(net.Pipe) = %T, want the conn itself", got)
	}
	if got := Unwrap(c1); got != c1 {
		t.Fatalf("Unwrap(net.Pipe) = %T, want the conn itself", got)
	}
	a, _ := pair(t)
	if got := Unwrap(a); got != a.TCPConn {
		t.Fatalf("Unwrap(*Conn) = %T, want its *net.TCPConn", got)
	}
}

// Zero-length reads and writes still see a closed socket, as net's do.
func TestZeroLengthOnClosed(t *testing.T) {
	a, _ := pair(t)
	a.Close()
	if _, err := a.Read(nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read(nil) on a closed conn: %v; want net.ErrClosed", err)
	}
	if _, err := a.Write(nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write(nil) on a closed conn: %v; want net.ErrClosed", err)
	}
}

// io.Copy between two wrapped connections (ReadFrom: spliced) and out of
// one into a plain writer (WriteTo) moves every byte.
func TestCopy(t *testing.T) {
	a, b := pair(t)
	c, d := pair(t)
	want := bytes.Repeat([]byte("copy me "), 1<<16) // 512 KiB
	go func() { b.Write(want); b.CloseWrite() }()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, a) // c.ReadFrom(a)
		c.CloseWrite()
		done <- err
	}()
	var got bytes.Buffer
	if _, err := io.Copy(&got, d); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("copied %d bytes, want %d", got.Len(), len(want))
	}
	e, f := pair(t)
	go func() { f.Write([]byte("to a buffer")); f.CloseWrite() }()
	var buf bytes.Buffer
	if _, err := e.WriteTo(&buf); err != nil || buf.String() != "to a buffer" {
		t.Fatalf("WriteTo = %q, %v", buf.String(), err)
	}
}

// What one goroutine wrote before sending bytes is visible to the one that
// received them. Under -race this fails if the socket I/O hides the
// ordering from the race detector (raw syscalls do; race builds use the
// syscall package's calls).
func TestSocketOrdersMemory(t *testing.T) {
	a, b := pair(t)
	var shared int
	go func() {
		shared = 42
		a.Write([]byte{1})
	}()
	if _, err := io.ReadFull(b, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if shared != 42 {
		t.Fatalf("shared = %d after the byte arrived, want 42", shared)
	}
	go func() {
		shared = 43
		b.Write([]byte{2})
	}()
	if _, err := io.ReadFull(a, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if shared != 43 {
		t.Fatalf("shared = %d after the byte arrived, want 43", shared)
	}
}
