package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Stray bytes after a response that arrive in a separate TLS record but in
// the same socket read as the response's last record: tls.Conn holds them
// raw, the socket peek sees nothing, bufio has nothing buffered.
func TestH1ClientTLSStrayRecordAfterResponse(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // for its certificate and client config only
	cert := srv.TLS.Certificates[0]
	ccfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	ccfg.NextProtos = nil
	srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.Method == http.MethodHead {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")         // record 1
						io.WriteString(c, "HTTP/1.1 404 Stray\r\nContent-Length: 5\r\n\r\nstray") // record 2: nobody asked
					} else {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld")
					}
				}
			}(c)
		}
	}()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: ccfg}
		return d.DialContext(ctx, "tcp", addr)
	}
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	addr := ln.Addr().String()
	fails := 0
	for i := 0; i < 20; i++ {
		if _, _, err := h1Do(t, h, context.Background(), http.MethodHead, addr, "/", nil); err != nil {
			t.Fatalf("HEAD: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
		resp, got, err := h1Do(t, h, context.Background(), http.MethodGet, addr, "/", nil)
		if err != nil || resp.StatusCode != 200 || got != "world" {
			fails++
			if fails == 1 {
				code := 0
				if resp != nil {
					code = resp.StatusCode
				}
				t.Errorf("GET after HEAD (iteration %d): %d %q %v — read the stray bytes as its response", i, code, got, err)
			}
		}
		h.CloseIdleConnections()
	}
	t.Logf("%d/20 GETs got the stray response; connections %d", fails, conns.Load())
}
