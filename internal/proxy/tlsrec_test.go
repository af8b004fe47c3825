package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// writeCounter counts the writes made to the connection it wraps.
type writeCounter struct {
	net.Conn
	writes, bytes atomic.Int64
}

// SyscallConn lets batched reads reach the socket, as on a TCP connection.
func (c *writeCounter) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.bytes.Add(int64(len(p)))
	return c.Conn.Write(p)
}

// tlsPair is a TLS connection over loopback TCP: the server side over a
// recConn (as the proxies make them), its socket's writes counted, and the
// plain crypto/tls client side.
func tlsPair(t *testing.T, clientRec bool) (server, client *tls.Conn, serverSock *writeCounter) {
	t.Helper()
	cert := selfSigned(t, "bulk.test")
	cc, sc := tcpPair(t)
	serverSock = &writeCounter{Conn: sc}
	server = tls.Server(newRecConn(serverSock), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	var under net.Conn = cc
	if clientRec {
		under = newRecConn(cc)
	}
	client = tls.Client(under, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	errs := make(chan error, 1)
	go func() { errs <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client, serverSock
}

// TestBulkEncryptOneWritePerRead: pipe into a tls.Conn between proxies
// writes the records encrypted from one read of the plaintext side with one
// write (crypto/tls alone writes each 16 KiB record with its own), and the
// bytes arrive intact, followed by close_notify.
func TestBulkEncryptOneWritePerRead(t *testing.T) {
	server, client, sock := tlsPair(t, false)
	data := make([]byte, 8<<20)
	rand.Read(data)
	plainApp, plainProxy := net.Pipe() // each read returns what fits: 255 KiB
	go func() {
		plainApp.Write(data)
		plainApp.Close()
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	before := sock.writes.Load()
	res := pipe(server, plainProxy)
	if res.err != nil || res.n != int64(len(data)) {
		t.Fatalf("pipe: %d bytes, %v; want %d", res.n, res.err, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("client read %d bytes, not the %d written", len(b), len(data))
	}
	writes := sock.writes.Load() - before - 1 // the close_notify
	// 8 MiB in reads of 255 KiB: 33 writes; one per record would be 512+.
	if max := int64(len(data)/(bulkBuf-1024) + 2); writes > max {
		t.Errorf("%d socket writes for %d MiB, want at most %d (one per plaintext read)", writes, len(data)>>20, max)
	}
}

// TestBulkDecryptGathersRecords: pipe out of a tls.Conn between proxies
// writes the plaintext of all the records one socket read brought with one
// write (one per record before), intact, then half-closes.
func TestBulkDecryptGathersRecords(t *testing.T) {
	server, client, _ := tlsPair(t, true)
	data := make([]byte, 8<<20)
	rand.Read(data)
	// The sender batches too (as the peer proxy does): 255 KiB per write.
	appSide, senderIn := net.Pipe()
	go func() {
		appSide.Write(data)
		appSide.Close()
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(client, senderIn)
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	out, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	dst := &writeCounter{Conn: out}
	res := pipe(dst, server)
	wg.Wait()
	if res.err != nil || res.n != int64(len(data)) {
		t.Fatalf("pipe: %d bytes, %v; want %d", res.n, res.err, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("app read %d bytes, not the %d sent", len(b), len(data))
	}
	// One write per 16 KiB record would be 512; gathered, far fewer.
	per := dst.bytes.Load() / dst.writes.Load()
	t.Logf("%d writes, %d KiB each on average", dst.writes.Load(), per>>10)
	if per < 2*maxRecordPlaintext {
		t.Errorf("%d writes of %d bytes on average: records not gathered (want ≥ %d)", dst.writes.Load(), per, 2*maxRecordPlaintext)
	}
}

// TestBulkEncryptCloseDoesNotWait: closing a tls.Conn whose batch is stuck
// in a write (the peer reads nothing) returns at once and ends the copy,
// as closing it during a tls.Conn.Write does; the close_notify must not
// wait behind the batch (crypto/tls would wait up to 5 s for it).
func TestBulkEncryptCloseDoesNotWait(t *testing.T) {
	server, _, sock := tlsPair(t, false) // the client never reads
	plainApp, plainProxy := net.Pipe()
	defer plainApp.Close()
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := plainApp.Write(chunk); err != nil {
				return
			}
		}
	}()
	done := make(chan copyResult, 1)
	go func() { done <- pipe(server, plainProxy) }()
	// Wait until the socket stops taking writes (its buffers are full).
	for last := int64(-1); ; {
		time.Sleep(200 * time.Millisecond)
		n := sock.bytes.Load()
		if n == last && n > 0 {
			break
		}
		last = n
	}
	start := time.Now()
	server.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a batch stuck in a write", d)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("the copy did not end after Close")
	}
}

// TestBulkIdleHoldsNoBuffers: between batches, an opaque mTLS copy waiting
// on an idle connection (both directions, sockets on both sides) holds no
// batch buffer (bulkBuf each), and the bytes of every burst arrive whole.
func TestBulkIdleHoldsNoBuffers(t *testing.T) {
	server, client, _ := tlsPair(t, true)
	// app → [plain TCP] → client (encrypt) → TLS → server (decrypt) → [plain TCP] → sink
	appIn, proxyIn := tcpPair(t)
	proxyOut, sink := tcpPair(t)
	go pipe(client, proxyIn)
	go pipe(proxyOut, server)
	for burst := range 3 {
		data := make([]byte, 4<<20)
		rand.Read(data)
		go appIn.Write(data)
		got := make([]byte, len(data))
		if _, err := io.ReadFull(sink, got); err != nil {
			t.Fatalf("burst %d: %v", burst, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("burst %d: bytes differ", burst)
		}
		deadline := time.Now().Add(2 * time.Second)
		for bulkBufsOut.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := bulkBufsOut.Load(); n != 0 {
			t.Fatalf("burst %d: idle copies hold %d batch buffers", burst, n)
		}
	}
}

// tcpPair is the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// A consumer that stops reading (a slow download, a stuck app) must not
// make a copy hold more than its batch in flight: on the encrypting side
// the records being written (the plaintext's buffer is given back first),
// on the decrypting side the plaintext waiting for the app and the rest
// of one socket read. With io.Copy it was 32 KiB per direction per proxy.
func TestBulkStalledConsumerHoldsBoundedBuffers(t *testing.T) {
	for deadline := time.Now().Add(2 * time.Second); bulkBufsOut.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d batch buffers held before the test", bulkBufsOut.Load())
		}
	}
	// Runs last, once every connection is closed: nothing stays held (a
	// copy that ended on an error used to keep the rest of its last
	// socket read).
	t.Cleanup(func() {
		for deadline := time.Now().Add(2 * time.Second); bulkBufsOut.Load() != 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%d batch buffers still held after the connections closed", bulkBufsOut.Load())
				return
			}
		}
	})
	server, client, _ := tlsPair(t, true)
	appIn, proxyIn := tcpPair(t)
	proxyOut, _ := tcpPair(t) // the far end never reads
	go pipe(client, proxyIn)
	go pipe(proxyOut, server)
	go func() {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := appIn.Write(chunk); err != nil {
				return
			}
		}
	}()
	// Wait until the stall is complete: the count stops moving.
	var held int64
	for stable, last := 0, int64(-1); stable < 10; time.Sleep(100 * time.Millisecond) {
		held = bulkBufsOut.Load()
		if held == last {
			stable++
		} else {
			stable, last = 0, held
		}
	}
	t.Logf("one connection stalled one way (both proxies): %d batch buffers of %d KiB held", held, bulkBuf>>10)
	if held > 3 {
		t.Errorf("%d batch buffers held by one stalled connection, want at most 3 (the records in flight; decrypted plaintext and the rest of a socket read)", held)
	}
}
