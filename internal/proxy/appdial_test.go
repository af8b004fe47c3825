package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// listenPodIPOnly listens on 127.0.0.2 (standing in for the pod's own IP)
// on a port nothing listens on at 127.0.0.1, so a loopback dial is refused.
func listenPodIPOnly(t testing.TB) (net.Listener, uint16) {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("cannot listen on 127.0.0.2: %v", err)
		}
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))); err == nil {
			c.Close()
			l.Close()
			continue
		}
		t.Cleanup(func() { l.Close() })
		return l, port
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, 0
}

// acceptAll accepts and closes connections, counting them per local address.
func acceptAll(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func inboundCtx(local string) context.Context {
	info := &connInfo{direction: "inbound"}
	if local != "" {
		info.local = netip.MustParseAddr(local)
	}
	return context.WithValue(context.Background(), connKey{}, info)
}

func TestDialAppFallsBackToTheAddressTheClientDialed(t *testing.T) {
	p := &Proxy{cfg: DefaultConfig()}
	podOnly, podPort := listenPodIPOnly(t)
	acceptAll(podOnly)
	anyAddr, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer anyAddr.Close()
	acceptAll(anyAddr)
	anyPort := uint16(anyAddr.Addr().(*net.TCPAddr).Port)
	loop := func(port uint16) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))) }

	tests := []struct {
		name   string
		addr   string
		local  string
		want   string // the remote address of the connection; "" for an error
		prefer bool   // the port is remembered as answering on the local address
	}{
		{"app on loopback", loop(anyPort), "127.0.0.2", loop(anyPort), false},
		{"app on the pod IP only", loop(podPort), "127.0.0.2", "127.0.0.2:" + strconv.Itoa(int(podPort)), true},
		{"remembered", loop(podPort), "127.0.0.2", "127.0.0.2:" + strconv.Itoa(int(podPort)), true},
		{"no original destination", loop(podPort), "", "", true},
		{"the client dialed loopback", loop(podPort), "127.0.0.1", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := p.dialApp(inboundCtx(tt.local), tt.addr)
			got := ""
			if err == nil {
				got = c.RemoteAddr().String()
				c.Close()
			}
			if got != tt.want {
				t.Errorf("connected to %q (err %v), want %q", got, err, tt.want)
			}
			ap := netip.MustParseAddrPort(tt.addr)
			if p.apps.preferLocal(ap.Port()) != tt.prefer {
				t.Errorf("port %d remembered as on the local address: %v, want %v", ap.Port(), !tt.prefer, tt.prefer)
			}
		})
	}

	// The app moves to loopback: the remembered address refuses, loopback
	// answers, and the port is remembered as on loopback again.
	podOnly.Close()
	moved, err := net.Listen("tcp", loop(podPort))
	if err != nil {
		t.Skipf("port %d taken on loopback meanwhile: %v", podPort, err)
	}
	defer moved.Close()
	acceptAll(moved)
	c, err := p.dialApp(inboundCtx("127.0.0.2"), loop(podPort))
	if err != nil {
		t.Fatalf("after the app moved to loopback: %v", err)
	}
	if got := c.RemoteAddr().String(); got != loop(podPort) {
		t.Errorf("after the move, connected to %s, want %s", got, loop(podPort))
	}
	c.Close()
	if p.apps.preferLocal(podPort) {
		t.Error("after the move the port is still remembered as on the pod IP")
	}
}

// TestInboundHTTPReachesAppOnPodIP: the HTTP transports (HTTP/1 and h2c)
// carry the connection's local address to the dialer.
func TestInboundHTTPReachesAppOnPodIP(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2), func(t *testing.T) {
			p := &Proxy{cfg: DefaultConfig()}
			p.h1, p.h2 = p.newTransports()
			defer p.h1.CloseIdleConnections()
			defer p.h2.CloseIdleConnections()
			l, port := listenPodIPOnly(t)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "proto=%s", r.Proto)
			}), Protocols: new(http.Protocols)}
			srv.Protocols.SetHTTP1(true)
			srv.Protocols.SetUnencryptedHTTP2(true)
			go srv.Serve(l)
			defer srv.Close()
			ctx := withUpstream(inboundCtx("127.0.0.2"), "inbound", "", "")
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(int(port))+"/", nil)
			var tr http.RoundTripper = p.h1
			want := "proto=HTTP/1.1"
			if h2 {
				tr, want = p.h2, "proto=HTTP/2.0"
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != want {
				t.Errorf("answer %q, want %q", b, want)
			}
		})
	}
}

// BenchmarkDialApp measures what the fallback costs per new connection to
// the app: loopback (the usual app, no cost), the first connection to an
// app on the pod IP only (a refused loopback connect, then the pod IP),
// and later ones (the remembered address, no cost).
func BenchmarkDialApp(b *testing.B) {
	anyAddr, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer anyAddr.Close()
	acceptAll(anyAddr)
	podOnly, podPort := listenPodIPOnly(b)
	acceptAll(podOnly)
	cases := []struct {
		name   string
		addr   string
		forget bool
	}{
		{"loopback", anyAddr.Addr().String(), false},
		{"pod-ip-first", "127.0.0.1:" + strconv.Itoa(int(podPort)), true},
		{"pod-ip-remembered", "127.0.0.1:" + strconv.Itoa(int(podPort)), false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			p := &Proxy{cfg: DefaultConfig()}
			ctx := inboundCtx("127.0.0.2")
			start := time.Now()
			for b.Loop() {
				if tc.forget {
					p.apps.viaLocal.Clear()
				}
				c, err := p.dialApp(ctx, tc.addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				if time.Since(start) > 20*time.Second {
					b.Fatal("benchmark ran past its time bound")
				}
			}
		})
	}
}
