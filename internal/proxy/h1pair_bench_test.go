package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkH1Pair sends keep-alive HTTP/1.1 requests through a proxy pair
// (binding → outbound proxy → inbound proxy → backend) on loopback, the
// client and the backend raw sockets that allocate nothing per request, so
// mallocs/req is what the two proxies allocate for one request, and most
// of cpu-µs/req (the process's CPU time) is theirs. The mTLS case has the
// proxies certified by an in-process identity service, HTTP/1 on pooled
// mTLS connections between them:
//
//	go test -run '^$' -bench H1Pair -benchmem ./internal/proxy/
func BenchmarkH1Pair(b *testing.B) {
	b.Run("plaintext", func(b *testing.B) {
		benchH1Pair(b, func(backend string) string {
			addr, _, _ := pair(b, backend)
			return addr
		})
	})
	b.Run("mTLS", func(b *testing.B) {
		benchH1Pair(b, func(backend string) string {
			m := newMesh(b)
			in := meshedProxy(b, m.identity(b, apiID), func(c *Config) { c.InboundForward = backend })
			out := meshedProxy(b, m.identity(b, webID), func(c *Config) {
				c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: in.inbound, Proxy: true, Identity: apiID}}}
			}, "web.test:80")
			return out.bindings[0]
		})
	})
}

// benchH1Pair measures requests through the pair that start makes in front
// of the backend, returning the address the client sends to.
func benchH1Pair(b *testing.B, start func(backend string) string) {
	one := h1PairExchange(b, start)
	for range 100 {
		one() // warm the pools and connections
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		one()
		n++
	}
	cpu := processCPU(b) - cpu0
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/req")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "mallocs/req")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n), "B/req")
}

// h1PairExchange starts a backend answering 1 KiB, the pair start makes in
// front of it, and a client connected to the pair; one sends a request
// and reads its response whole, allocating nothing itself.
func h1PairExchange(t testing.TB, start func(backend string) string) (one func()) {
	const size = 1024
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Tue, 01 Dec 2026 18:00:00 GMT\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + string(bytes.Repeat([]byte("x"), size)))
	backend := listenTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if err := skipHead(br); err != nil {
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
	addr := start(backend)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := []byte("GET /echo?size=1024 HTTP/1.1\r\nHost: web.test\r\nUser-Agent: fortio.org/fortio-1.66.5\r\n\r\n")
	br := bufio.NewReader(c)
	body := make([]byte, size)
	return func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n, err := contentLength(br)
		if err != nil || n != size {
			t.Fatalf("response: length %d, %v", n, err)
		}
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
	}
}

// processCPU is the CPU time (user and system) the test process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// skipHead reads up to and including the blank line ending a head.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			return nil
		}
	}
}

// contentLength reads a response head and returns its Content-Length.
func contentLength(br *bufio.Reader) (int, error) {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return n, err
		}
		if len(line) <= 2 {
			return n, nil
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
}
