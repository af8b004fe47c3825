package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// oneProc runs the test on one processor, as a proxy pinned to a core (or
// given one by its CPU limit) does: what runs before a flush is then what
// the scheduler has runnable.
func oneProc(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}

// TestBatchConnGathersRunnableWriters: writes made by goroutines that are
// runnable together go out in one write to the socket, in order per writer.
func TestBatchConnGathersRunnableWriters(t *testing.T) {
	oneProc(t)
	client, server := tcpPair(t)
	sock := &writeCounter{Conn: server}
	b := newBatchConn(sock)

	const writers, each = 20, 3
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				var rec [8]byte
				binary.BigEndian.PutUint32(rec[:4], uint32(w))
				binary.BigEndian.PutUint32(rec[4:], uint32(i))
				if _, err := b.Write(rec[:]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	b.Close()

	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each*8 {
		t.Fatalf("read %d bytes, want %d", len(got), writers*each*8)
	}
	next := make([]uint32, writers)
	for off := 0; off < len(got); off += 8 {
		w, i := binary.BigEndian.Uint32(got[off:]), binary.BigEndian.Uint32(got[off+4:])
		if w >= writers || i != next[w] {
			t.Fatalf("record %d: writer %d's write %d, want its write %d", off/8, w, i, next[w])
		}
		next[w]++
	}
	// Unbatched: 60 writes.
	t.Logf("%d socket writes", sock.writes.Load())
	if n := sock.writes.Load(); n > 3 {
		t.Errorf("%d writes to the socket for %d writes from runnable goroutines; want them gathered (≤ 3)", n, writers*each)
	}
}

// TestBatchConnLoneWrite: a write with nothing else runnable goes out
// without waiting for anything.
func TestBatchConnLoneWrite(t *testing.T) {
	client, server := tcpPair(t)
	b := newBatchConn(server)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	for i := range 50 {
		start := time.Now()
		if _, err := b.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("exchange %d took %v", i, d)
		}
	}
}

// TestBatchConnDirectWrite: a large write into an idle connection is
// written by its caller, in one write, and writes queued behind it follow.
func TestBatchConnDirectWrite(t *testing.T) {
	client, server := tcpPair(t)
	sock := &writeCounter{Conn: server}
	b := newBatchConn(sock)
	big := bytes.Repeat([]byte("b"), 64<<10)
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(client)
		done <- got
	}()
	if n, err := b.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if w := sock.writes.Load(); w != 1 {
		t.Errorf("%d socket writes during a %d-byte write, want 1 (direct)", w, len(big))
	}
	b.Write([]byte("tail"))
	b.Close()
	got := <-done
	if want := append(append([]byte{}, big...), "tail"...); !bytes.Equal(got, want) {
		t.Errorf("read %d bytes, want %d", len(got), len(want))
	}
}

// TestBatchConnCloseWritesWhatIsBuffered: Close sends buffered bytes
// (a GOAWAY, say) before it closes; writes after it fail.
func TestBatchConnCloseWritesWhatIsBuffered(t *testing.T) {
	oneProc(t)
	client, server := tcpPair(t)
	b := newBatchConn(server)
	b.Write([]byte("goaway"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "goaway" {
		t.Errorf("read %q, %v; want \"goaway\" then EOF", got, err)
	}
}

// TestBatchConnFailedWrite: a write that fails closes the connection (its
// reader sees it) and its error comes back from the next write.
func TestBatchConnFailedWrite(t *testing.T) {
	client, server := tcpPair(t)
	b := newBatchConn(server)
	boom := errors.New("boom")
	b.Conn = failingConn{Conn: server, err: boom}
	b.Write([]byte("lost"))
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if _, err = b.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Write after a failed flush: %v, want %v", err, boom)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); err == nil {
		t.Errorf("the peer read %d bytes; want the connection closed", n)
	}
}

type failingConn struct {
	net.Conn
	err error
}

func (c failingConn) Write([]byte) (int, error) { return 0, c.err }

// TestBatchConnBoundedBuffer: with a peer that does not read, writers wait
// once batchMaxPending bytes are buffered, and Close gives up on the socket
// after batchCloseTimeout and releases them.
func TestBatchConnBoundedBuffer(t *testing.T) {
	// A pipe: a write blocks until the peer, which never reads, reads.
	server, peer := net.Pipe()
	defer peer.Close()
	b := newBatchConn(server)
	chunk := make([]byte, 4<<10)
	wrote := make(chan int64, 1)
	go func() {
		var n int64
		for {
			if _, err := b.Write(chunk); err != nil {
				wrote <- n
				return
			}
			n += int64(len(chunk))
		}
	}()
	// The batch fills; the writer blocks.
	time.Sleep(200 * time.Millisecond)
	b.mu.Lock()
	pending := b.pending()
	b.mu.Unlock()
	if pending > batchMaxPending+len(chunk) || pending < batchMaxPending {
		t.Errorf("%d bytes buffered with a stuck peer, want %d–%d", pending, batchMaxPending, batchMaxPending+len(chunk))
	}
	start := time.Now()
	if err := b.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Fatal(err)
	}
	if d := time.Since(start); d > batchCloseTimeout+2*time.Second {
		t.Errorf("Close took %v with a stuck peer, want about %v", d, batchCloseTimeout)
	}
	select {
	case n := <-wrote:
		t.Logf("the writer gave %d bytes before it was stopped", n)
	case <-time.After(5 * time.Second):
		t.Fatal("a writer waiting for room was not released by Close")
	}
}

// TestH2ConcurrentStreamsShareWrites: through the proxy, n requests that
// arrive together go to the upstream in a few writes (counted as data
// segments on the upstream's socket) and their n responses come back to the
// client in a few writes, not a write per request and per response.
func TestH2ConcurrentStreamsShareWrites(t *testing.T) {
	oneProc(t)
	const n = 20
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	up := &segCounter{}
	backend := h2cServerOn(t, up, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			arrived.Done()
			select {
			case <-all:
			case <-time.After(5 * time.Second):
			}
		}
		w.Write(bytes.Repeat([]byte("x"), 1024))
	}))
	client, br, sc := servedH2Conn(t, backend) // the upstream connection is made

	segsBefore, writesBefore := up.dataSegsIn(t), sc.writes.Load()
	var burst []byte
	for i := range n {
		burst = h2GET(burst, uint32(3+2*i), "web.test", "/burst")
	}
	client.Write(burst)
	got := readResponses(t, client, br, n)
	if len(got) != n {
		t.Fatalf("%d responses with data, want %d", len(got), n)
	}
	segs, writes := up.dataSegsIn(t)-segsBefore, sc.writes.Load()-writesBefore
	t.Logf("%d requests: %d data segments to the upstream, %d writes to the client", n, segs, writes)
	// A write per request and per response without the batching.
	if segs > n/4 {
		t.Errorf("the %d requests reached the upstream in %d segments; want them gathered (≤ %d)", n, segs, n/4)
	}
	if writes > n/4 {
		t.Errorf("the %d responses took %d writes to the client; want them gathered (≤ %d)", n, writes, n/4)
	}
}

// segCounter is a listener's record of the connections it accepted, whose
// received data segments it reads from the kernel (TCP_INFO).
type segCounter struct {
	net.Listener
	mu    sync.Mutex
	conns []*net.TCPConn
}

func (l *segCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c.(*net.TCPConn))
		l.mu.Unlock()
	}
	return c, err
}

// dataSegsIn sums tcpi_data_segs_in over the accepted connections.
func (l *segCounter) dataSegsIn(t *testing.T) uint32 {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var sum uint32
	for _, c := range l.conns {
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var info *unix.TCPInfo
		var gerr error
		if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
			t.Fatalf("TCP_INFO: %v %v", err, gerr)
		}
		sum += info.Data_segs_in
	}
	return sum
}

// gatedConn is a connection whose writes each wait to be let through: a
// socket slow enough that writes pile up behind the one in flight.
type gatedConn struct {
	net.Conn
	entered chan struct{} // a write began
	gate    chan struct{} // lets a write through
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.entered <- struct{}{}
	<-c.gate
	return len(p), nil
}

// TestBatchConnReusesBuffers: batch after batch, with writes arriving while
// a batch is written, a connection takes its buffers from the pool rather
// than allocating (and growing) new ones, large batches (many streams'
// frames, 40 KiB) included.
func TestBatchConnReusesBuffers(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	c := &gatedConn{entered: make(chan struct{}), gate: make(chan struct{})}
	b := newBatchConn(c)
	frame := make([]byte, 1024)
	round := func() {
		b.Write(frame)
		<-c.entered // the first batch is being written
		for range 40 {
			b.Write(frame) // a second batch, larger than a new buffer
		}
		c.gate <- struct{}{}
		<-c.entered
		c.gate <- struct{}{}
		for {
			b.mu.Lock()
			idle := !b.flushing
			b.mu.Unlock()
			if idle {
				return
			}
			runtime.Gosched()
		}
	}
	round() // fills the pool
	if allocs := testing.AllocsPerRun(200, round); allocs > 1 {
		t.Errorf("%.1f allocations per round of two batches, want at most 1 (the flush goroutine)", allocs)
	}
}
