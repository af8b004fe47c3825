package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/poll"
)

// halfCloseEcho reads until EOF, then answers with what it read and "bye".
func halfCloseEcho(c net.Conn) {
	got, _ := io.ReadAll(c)
	c.Write(append(got, []byte("|bye")...))
}

func TestOpaqueTCPHalfClose(t *testing.T) {
	backend := listenTCP(t, halfCloseEcho)
	tp := startProxy(t, func(c *Config) {
		c.DetectTimeout = 200 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"db.test:5432": {{Addr: backend}}}
	}, "db.test:5432")
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	payload := "\x00\x00\x00\x08\x04\xd2\x16\x2fnot http at all"
	io.WriteString(c, payload)
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != payload+"|bye" {
		t.Errorf("got %q, want %q", got, payload+"|bye")
	}
	poll.Until(t, 5*time.Second, "the condition", func() bool {
		m := tp.metricsText(t)
		return metricValue(t, m, "tcp_close_total", map[string]string{"peer": "dst", "classification": "success"}) == 1
	})
	m := tp.metricsText(t)
	if got := metricValue(t, m, "tcp_read_bytes_total", map[string]string{"peer": "src"}); got != float64(len(payload)) {
		t.Errorf("tcp_read_bytes_total{peer=src} = %v, want %d", got, len(payload))
	}
	if got := metricValue(t, m, "tcp_open_connections", map[string]string{}); got != 0 {
		t.Errorf("tcp_open_connections = %v after close, want 0", got)
	}
}

func TestServerFirstProtocolAfterDetectTimeout(t *testing.T) {
	backend := listenTCP(t, func(c net.Conn) {
		io.WriteString(c, "220 smtp ready\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "echo "+line)
	})
	tp := startProxy(t, func(c *Config) {
		c.DetectTimeout = 150 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"mail.test:25": {{Addr: backend}}}
	}, "mail.test:25")
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	start := time.Now()
	greet, err := br.ReadString('\n')
	if err != nil || greet != "220 smtp ready\r\n" {
		t.Fatalf("greeting = %q, %v", greet, err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("greeting after %v: detection should have waited for its timeout", el)
	}
	io.WriteString(c, "HELO x\r\n")
	if line, _ := br.ReadString('\n'); line != "echo HELO x\r\n" {
		t.Errorf("echo = %q", line)
	}
}

func TestOpaquePortsSkipDetection(t *testing.T) {
	backend := listenTCP(t, func(c net.Conn) { io.WriteString(c, "server speaks first") })
	tp := startProxy(t, func(c *Config) {
		c.DetectTimeout = 10 * time.Second // would stall a server-first protocol
		c.OpaquePorts = map[uint16]bool{3306: true}
		c.Destinations = map[string][]EndpointSpec{"mysql.test:3306": {{Addr: backend}}}
	}, "mysql.test:3306")
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "server speaks first" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestOpaqueConnectFailureIsCounted(t *testing.T) {
	tp := startProxy(t, func(c *Config) {
		c.OpaquePorts = map[uint16]bool{9: true}
		c.Destinations = map[string][]EndpointSpec{"gone.test:9": {{Addr: deadAddr(t)}}}
	}, "gone.test:9")
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Error("read data from a connection whose upstream refused")
	}
	c.Close()
	poll.Until(t, 5*time.Second, "the condition", func() bool {
		return metricValue(t, tp.metricsText(t), "tcp_close_total", map[string]string{"errno": "ECONNREFUSED"}) == 1
	})
}

func TestBadInputKeepsServingOthers(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	tp := startProxy(t, func(c *Config) {
		c.DetectTimeout = 200 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: backend}}}
	}, "web.test:80")
	addr := tp.bindings[0]
	// Warm up so steady-state goroutines (pools, servers) exist before counting.
	get(t, addr)
	base := runtime.NumGoroutine()

	tests := []struct {
		name, send, wantPrefix string
	}{
		{"malformed header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "HTTP/1.1 400"},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"bad version", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", "HTTP/1.1 400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tt.send)
			line, _ := bufio.NewReader(c).ReadString('\n')
			if !strings.HasPrefix(line, tt.wantPrefix) {
				t.Errorf("answer %q, want %s", line, tt.wantPrefix)
			}
		})
	}
	// Garbage bytes and abrupt resets: closed or forwarded, never a crash.
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			c.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01})
		case 1:
			io.WriteString(c, "GET / HTT")
		case 2:
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort")
		}
		c.(*net.TCPConn).SetLinger(0) // RST on close
		c.Close()
	}
	get(t, addr) // still serving everyone else
	poll.Until(t, 5*time.Second, "the condition", func() bool { return runtime.NumGoroutine() <= base+5 })
	if n := runtime.NumGoroutine(); n > base+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before, %d after bad input\n%s", base, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestSlowlorisIsCutOff(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	tp := startProxy(t, func(c *Config) {
		c.HeaderReadTimeout = 300 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: backend}}}
	}, "web.test:80")
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(closed)
	}()
	// Trickle a header byte every 50ms; the head never completes.
	for i := 0; i < 100; i++ {
		select {
		case <-closed:
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("slow client cut off after %v, want about the 300ms header timeout", el)
			}
			get(t, tp.bindings[0]) // others are still served
			return
		case <-time.After(50 * time.Millisecond):
			c.Write([]byte("X"))
		}
	}
	t.Fatal("a client trickling its request head was never cut off")
}

func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	release := make(chan struct{})
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished")
	}))
	tp := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: backend}}}
	}, "web.test:80")
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + tp.bindings[0] + "/")
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	poll.Until(t, 5*time.Second, "the condition", func() bool {
		return metricValue(t, tp.metricsText(t), "request_total", map[string]string{"direction": "outbound"}) == 1
	})
	shut := make(chan error, 1)
	go func() { shut <- tp.Shutdown(context.Background()) }()
	// New connections are refused while the old request drains.
	poll.Until(t, 5*time.Second, "the condition", func() bool {
		c, err := net.DialTimeout("tcp", tp.bindings[0], 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if tp.Ready() {
		t.Error("proxy still ready during shutdown")
	}
	close(release)
	if got := <-done; got != "finished" {
		t.Errorf("in-flight request = %q, want finished", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func get(t testing.TB, addr string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET: status %d", resp.StatusCode)
	}
}
