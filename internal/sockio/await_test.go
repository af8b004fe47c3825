package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
)

// readSyscalls is how many read(2) calls this thread has made, those that
// found nothing (EAGAIN) included: syscr of /proc/thread-self/io.
func readSyscalls(t *testing.T) int {
	return int(proctest.IOCount(t, "/proc/thread-self/io", "syscr"))
}

// answerLater makes b answer each request it reads with "pong" after d.
func answerLater(b net.Conn, d time.Duration) {
	go func() {
		buf, pong := make([]byte, 64), []byte("pong")
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
			time.Sleep(d)
			if _, err := b.Write(pong); err != nil {
				return
			}
		}
	}()
}

// WriteAwait returns once the answer can be read, and the read that
// follows is the only read(2): the one that would have found nothing is
// not made. Write then Read makes two when the answer comes later.
func TestWriteAwaitSkipsTheEmptyRead(t *testing.T) {
	a, b := pair(t)
	answerLater(b, 20*time.Millisecond)
	// A missed answer fails, not hangs.
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	runtime.LockOSThread() // the counters are this thread's, and so are the syscalls
	defer runtime.UnlockOSThread()
	buf := make([]byte, 16)
	// What readSyscalls itself reads: /proc's file, to its end.
	overhead := -readSyscalls(t) + readSyscalls(t)
	exchange := func(await bool) (reads int, took time.Duration) {
		before, start := readSyscalls(t), time.Now()
		var n int
		var err error
		if await {
			n, _, err = a.WriteAwait([]byte("ping"))
		} else {
			n, err = a.Write([]byte("ping"))
		}
		if n != 4 || err != nil {
			t.Fatalf("write = %d, %v; want 4, nil", n, err)
		}
		took = time.Since(start)
		if n, err := a.Read(buf); string(buf[:n]) != "pong" || err != nil {
			t.Fatalf("Read = %q, %v; want pong", buf[:n], err)
		}
		return readSyscalls(t) - before - overhead, took
	}
	for i := range 3 {
		plain, _ := exchange(false)
		awaited, took := exchange(true)
		if plain != 2 || awaited != 1 {
			t.Fatalf("exchange %d: read(2) calls: Write+Read %d, WriteAwait+Read %d; want 2 and 1", i, plain, awaited)
		}
		if took < 15*time.Millisecond {
			t.Fatalf("WriteAwait returned after %v, before the answer (20ms)", took)
		}
	}
}

// An answer that comes at once, even before the write returns, is not
// missed (the wait begins before the write).
func TestWriteAwaitImmediateAnswer(t *testing.T) {
	a, b := pair(t)
	answerLater(b, 0)
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	for i := range 200 {
		if n, pending, err := a.WriteAwait([]byte("ping")); n != 4 || pending || err != nil {
			t.Fatalf("WriteAwait %d = %d, %v, %v", i, n, pending, err)
		}
		if n, err := io.ReadFull(a, buf[:4]); string(buf[:n]) != "pong" || err != nil {
			t.Fatalf("read %d = %q, %v; want pong (a deadline error is a missed answer)", i, buf[:n], err)
		}
	}
}

// What ends a wait without an answer is left to the next Read: a
// deadline, a close from another goroutine, the peer's EOF.
func TestWriteAwaitEndsWithoutAnswer(t *testing.T) {
	buf := make([]byte, 16)
	t.Run("deadline", func(t *testing.T) {
		a, _ := pair(t)
		a.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if n, pending, err := a.WriteAwait([]byte("ping")); n != 4 || pending || err != nil {
			t.Fatalf("WriteAwait = %d, %v, %v; want 4, false, nil", n, pending, err)
		}
		if _, err := a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after = %v; want a deadline error", err)
		}
	})
	t.Run("deadline set while waiting", func(t *testing.T) {
		a, _ := pair(t)
		time.AfterFunc(30*time.Millisecond, func() { a.SetDeadline(time.Unix(1, 0)) })
		if n, pending, err := a.WriteAwait([]byte("ping")); n != 4 || pending || err != nil {
			t.Fatalf("WriteAwait = %d, %v, %v; want 4, false, nil", n, pending, err)
		}
		if _, err := a.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after = %v; want a deadline error", err)
		}
	})
	t.Run("closed while waiting", func(t *testing.T) {
		a, _ := pair(t)
		time.AfterFunc(30*time.Millisecond, func() { a.Close() })
		if n, pending, err := a.WriteAwait([]byte("ping")); n != 4 || pending || err != nil {
			t.Fatalf("WriteAwait = %d, %v, %v; want 4, false, nil", n, pending, err)
		}
		if _, err := a.Read(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after = %v; want net.ErrClosed", err)
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		a, b := pair(t)
		go func() {
			io.ReadFull(b, make([]byte, 4))
			b.Close()
		}()
		if n, pending, err := a.WriteAwait([]byte("ping")); n != 4 || pending || err != nil {
			t.Fatalf("WriteAwait = %d, %v, %v; want 4, false, nil", n, pending, err)
		}
		if n, err := a.Read(buf); n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("Read after = %d, %v; want EOF", n, err)
		}
	})
}

// A read deadline already past leaves the write to Write's own checks; a
// past write deadline or a closed Conn fail it as they fail Write.
func TestWriteAwaitPastDeadlineOrClosed(t *testing.T) {
	a, b := pair(t)
	a.SetReadDeadline(time.Unix(1, 0))
	if n, pending, err := a.WriteAwait([]byte("ping")); n != 4 || pending || err != nil {
		t.Fatalf("WriteAwait with a past read deadline = %d, %v, %v; want 4, false, nil (written)", n, pending, err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "ping" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	a.SetReadDeadline(time.Time{})
	a.SetWriteDeadline(time.Unix(1, 0))
	if _, _, err := a.WriteAwait([]byte("ping")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteAwait past the write deadline = %v; want a deadline error, as Write", err)
	}
	a.Close()
	if _, _, err := a.WriteAwait([]byte("ping")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteAwait on a closed Conn = %v; want net.ErrClosed", err)
	}
}

// More than the socket takes at once: the rest goes out as Write sends
// it (waiting for room), all of it, in order.
func TestWriteAwaitBackpressure(t *testing.T) {
	a, b := pair(t)
	a.SetWriteBuffer(16 << 10)
	b.SetReadBuffer(16 << 10)
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	p := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		buf := make([]byte, len(p))
		io.ReadFull(b, buf)
		got <- buf
	}()
	if n, pending, err := a.WriteAwait(p); n != len(p) || pending || err != nil {
		t.Fatalf("WriteAwait = %d, %v, %v; want %d, false, nil", n, pending, err, len(p))
	}
	if !bytes.Equal(<-got, p) {
		t.Fatal("the peer did not read what was written")
	}
}

// Whatever the socket already has to read when WriteAwait is called (a
// pooled connection's server closed it, or sent bytes unasked) is found
// first: nothing is written, and pending says so. What arrived before
// the call could not wake the wait: a server that half-closed and keeps
// reading would never answer.
func TestWriteAwaitPending(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(b *net.TCPConn)
	}{
		{"bytes", func(b *net.TCPConn) { b.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n")) }},
		{"half-closed, still reading", func(b *net.TCPConn) { b.CloseWrite() }},
		{"closed", func(b *net.TCPConn) { b.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			tc.do(b)
			time.Sleep(30 * time.Millisecond) // arrived, and seen by the poller
			a.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, pending, err := a.WriteAwait([]byte("GET / HTTP/1.1\r\n\r\n"))
			if n != 0 || !pending || err != nil {
				t.Fatalf("WriteAwait = %d, %v, %v; want 0, true, nil (nothing written)", n, pending, err)
			}
			b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := b.Read(make([]byte, 64)); n > 0 {
				t.Fatalf("the peer read %d bytes; want none", n)
			} else if err == nil {
				t.Fatal("the peer's read returned no bytes and no error")
			}
		})
	}
}

func TestPeek(t *testing.T) {
	a, b := pair(t)
	buf := make([]byte, 8)
	if n, errno, err := a.Peek(buf); n != 0 || errno != syscall.EAGAIN || err != nil {
		t.Fatalf("Peek with nothing sent = %d, %v, %v; want 0, EAGAIN, nil", n, errno, err)
	}
	b.Write([]byte("abc"))
	time.Sleep(20 * time.Millisecond)
	if n, errno, err := a.Peek(buf); string(buf[:n]) != "abc" || errno != 0 || err != nil {
		t.Fatalf("Peek = %q, %v, %v; want abc", buf[:n], errno, err)
	}
	if n, err := a.Read(buf); string(buf[:n]) != "abc" || err != nil {
		t.Fatalf("Read after Peek = %q, %v; want abc (Peek takes nothing)", buf[:n], err)
	}
	b.Close()
	time.Sleep(20 * time.Millisecond)
	if n, errno, err := a.Peek(buf); n != 0 || errno != 0 || err != nil {
		t.Fatalf("Peek at EOF = %d, %v, %v; want 0, 0, nil", n, errno, err)
	}
	a.Close()
	if _, _, err := a.Peek(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Peek on a closed Conn = %v; want net.ErrClosed", err)
	}
}

func TestAwaitAndPeekNoAllocs(t *testing.T) {
	a, b := pair(t)
	answerLater(b, 0)
	p, buf := []byte("ping"), make([]byte, 4)
	allocs := testing.AllocsPerRun(200, func() {
		a.Peek(buf)
		a.WriteAwait(p)
		io.ReadFull(a, buf)
	})
	if allocs != 0 {
		t.Fatalf("Peek, WriteAwait and a Read allocate %.1f times; want 0", allocs)
	}
}
