package proxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
)

// readChars is this process's rchar from /proc/self/io: bytes it read
// with read(2) and friends. splice(2) moves bytes without it.
func readChars(t *testing.T) int64 {
	return proctest.IOCount(t, "/proc/self/io", "rchar")
}

// TestOpaqueTCPSplicesBothWays moves bytes both ways through a detected
// (not HTTP) opaque connection while every endpoint of the test reads by
// splice into /dev/null, so any read(2) of the payload is the proxy's:
// both directions must be spliced, including the one toward the client,
// whose connection sits under the detection wrapper.
func TestOpaqueTCPSplicesBothWays(t *testing.T) {
	const n = 32 << 20
	const hello = "\x00opaque\n" // not HTTP: detection says opaque
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	chunk := make([]byte, 1<<20)
	send := func(c net.Conn) error {
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	}
	backendErr := make(chan error, 1)
	backend := listenTCP(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		// The client's first line is read with one small read; the rest
		// of its upload goes to /dev/null by splice.
		line := make([]byte, len(hello))
		if _, err := io.ReadFull(c, line); err != nil || string(line) != hello {
			backendErr <- fmt.Errorf("first line %q: %v", line, err)
			return
		}
		got, err := null.ReadFrom(c)
		if err == nil && got != n {
			err = fmt.Errorf("backend received %d of %d bytes", got, n)
		}
		if err == nil {
			err = send(c)
		}
		backendErr <- err
	})
	tp := startProxy(t, func(c *Config) {
		c.DetectTimeout = 200 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"bulk.test:9000": {{Addr: backend}}}
	}, "bulk.test:9000")
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	before := readChars(t)
	if _, err := io.WriteString(c, hello); err != nil {
		t.Fatal(err)
	}
	if err := send(c); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := null.ReadFrom(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-backendErr; err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("client received %d of %d bytes", got, n)
	}
	// Both directions copied with read(2) would read 2n; one of them n.
	if read := readChars(t) - before; read > n/4 {
		t.Errorf("the process read %d bytes with read(2) while moving %d each way: not spliced (want ≤ %d)", read, n, n/4)
	}
}
