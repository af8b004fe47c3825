package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/poll"
	"github.com/weftmesh/weft/internal/target"
	"github.com/weftmesh/weft/internal/tunnel"
)

// poolOf is a pool of one endpoint.
func poolOf(addr string, peer balance.Peer) *balance.Pool {
	p := balance.NewPool(balance.NewP2CPeakEWMA())
	p.Update([]*balance.Endpoint{balance.NewEndpoint(addr, 1, peer)})
	return p
}

func portNum(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

// TestOpaqueTransport: as discovery describes a meshed database pod (its
// port opaque, its proxy's inbound port for the opaque transport), the
// client's proxy carries the connection over mTLS to the server's proxy,
// which forwards it to the application port named in the header. Nothing
// of the payload crosses the wire in clear; both sides count the connection
// as mTLS with the peer's identity, and the client's series carry
// discovery's dst_* labels.
func TestOpaqueTransport(t *testing.T) {
	m := newMesh(t)
	app := listenTCP(t, halfCloseEcho) // the database, on the server pod's loopback
	b := meshedProxy(t, m.identity(t, apiID), nil)
	wire, tp := startTap(t, b.inbound) // between the two pods
	res := &routedResolver{target: "db.shop.svc.cluster.local:5432", pool: poolOf(app, balance.Peer{
		Meshed: true, Identity: apiID, Opaque: true, OpaquePort: portNum(t, wire),
		Labels: map[string]string{"dst_namespace": "shop", "dst_service": "db", "dst_deployment": "db"},
	})}
	a := startProxyWith(t, Options{Identity: m.identity(t, webID), Discovery: res},
		func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, "db.shop.svc.cluster.local:5432")

	if got := exchange(t, a.bindings[0], "\x00\x03secret-sql"); got != "\x00\x03secret-sql|bye" {
		t.Fatalf("echo: got %q", got)
	}
	sent := tp.bytes()
	if bytes.Contains(sent, []byte("secret-sql")) {
		t.Error("opaque payload crossed the wire in plaintext")
	}
	if len(sent) < 5 || sent[0] != 0x16 || sent[1] != 0x03 {
		t.Errorf("the wire does not start with a TLS handshake record: % x", sent[:min(len(sent), 8)])
	}
	poll.Until(t, 5*time.Second, "the condition", func() bool {
		return metricValue(t, b.metricsText(t), "tcp_open_total", map[string]string{"direction": "inbound", "peer": "src", "tls": "true", "client_id": webID}) == 1
	})
	if got := metricValue(t, a.metricsText(t), "tcp_open_total", map[string]string{"direction": "outbound", "peer": "dst",
		"tls": "true", "server_id": apiID, "dst_deployment": "db", "dst_namespace": "shop", "dst_service": "db"}); got != 1 {
		t.Errorf("client: tcp_open_total{outbound,dst,tls=true,server_id=api,dst_deployment=db} = %v, want 1\n%s", got, a.metricsText(t))
	}
}

// TestOpaqueWithoutTransportIsPlaintext: a meshed endpoint whose port is
// opaque but that offers no opaque transport still works, in plaintext,
// and says so in its labels (the peer's proxy would not detect TLS there).
func TestOpaqueWithoutTransportIsPlaintext(t *testing.T) {
	m := newMesh(t)
	app := listenTCP(t, halfCloseEcho)
	res := &routedResolver{target: "db:5432", pool: poolOf(app, balance.Peer{Meshed: true, Identity: apiID, Opaque: true})}
	a := startProxyWith(t, Options{Identity: m.identity(t, webID), Discovery: res},
		func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, "db:5432")
	if got := exchange(t, a.bindings[0], "ping"); got != "ping|bye" {
		t.Fatalf("echo: got %q", got)
	}
	if got := metricValue(t, a.metricsText(t), "tcp_open_total", map[string]string{"direction": "outbound", "peer": "dst",
		"tls": "no_identity", "no_tls_reason": compat.NoTLSNotProvidedByDiscovery}); got != 1 {
		t.Errorf("tcp_open_total{tls=no_identity} = %v, want 1", got)
	}
}

// TestDiscoveryOpaqueSkipsDetection: a destination that discovery marks
// opaque (by its profile or its endpoints' hint) is not detected outbound,
// so a server-speaks-first protocol gets its banner at once instead of
// after the detection timeout.
func TestDiscoveryOpaqueSkipsDetection(t *testing.T) {
	banner := listenTCP(t, func(c net.Conn) { io.WriteString(c, "220 smtp ready\r\n") })
	for _, tc := range []struct {
		name string
		d    *routedResolver
	}{
		{"profile", &routedResolver{target: "mail:25", pool: poolOf(banner, balance.Peer{}), profile: &target.Profile{Opaque: true}}},
		{"endpoint hint", &routedResolver{target: "mail:25", pool: poolOf(banner, balance.Peer{Opaque: true})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startProxyWith(t, Options{Discovery: tc.d}, func(c *Config) {
				c.DestinationAddr, c.DetectTimeout = "127.0.0.1:1", 5*time.Second
			}, "mail:25")
			c, err := net.Dial("tcp", a.bindings[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			c.SetReadDeadline(start.Add(2 * time.Second))
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "220 smtp ready\r\n" {
				t.Fatalf("banner: %q, %v (after %v)", buf[:n], err, time.Since(start))
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("banner took %v: detection was not skipped", d)
			}
		})
	}
}

// TestPostQuantumKeyExchange: mTLS between two proxies negotiates the
// hybrid X25519MLKEM768 group, not a classical one.
func TestPostQuantumKeyExchange(t *testing.T) {
	m := newMesh(t)
	b := meshedProxy(t, m.identity(t, apiID), nil)
	a := meshedProxy(t, m.identity(t, webID), nil)
	for _, alpn := range [][]string{nil, {tunnel.ALPN}} {
		tc, err := a.dialTLS(context.Background(), compat.Outbound, b.inbound, apiID, alpn...)
		if err != nil {
			t.Fatal(err)
		}
		cs := tc.ConnectionState()
		tc.Close()
		if cs.CurveID != tls.X25519MLKEM768 {
			t.Errorf("ALPN %v: key exchange %v, want %v", alpn, cs.CurveID, tls.X25519MLKEM768)
		}
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("ALPN %v: TLS version %#x, want 1.3", alpn, cs.Version)
		}
	}
}

// TestTunnelRefusals: a peer that offers the opaque transport but sends a
// bad header, or names one of the proxy's own ports, is closed and nothing
// is forwarded.
func TestTunnelRefusals(t *testing.T) {
	m := newMesh(t)
	b := meshedProxy(t, m.identity(t, apiID), nil)
	a := meshedProxy(t, m.identity(t, webID), nil)
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"bad magic", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"admin port", must(tunnel.Header{Port: portNum(t, b.admin)}.Append(nil))},
		{"inbound port", must(tunnel.Header{Port: portNum(t, b.inbound)}.Append(nil))},
	} {
		tc2, err := a.dialTLS(context.Background(), compat.Outbound, b.inbound, apiID, tunnel.ALPN)
		if err != nil {
			t.Fatal(err)
		}
		tc2.Write(tc.header)
		tc2.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := tc2.Read(make([]byte, 16))
		tc2.Close()
		if n != 0 || err == nil || errors.Is(err, errTimeout) {
			t.Errorf("%s: read %d bytes, err %v; want the connection closed", tc.name, n, err)
		}
	}
	if got := metricValue(t, b.metricsText(t), "tcp_open_total", map[string]string{"direction": "inbound", "peer": "dst"}); got != 0 {
		t.Errorf("refused tunnels were forwarded: %v connections", got)
	}
}

var errTimeout = fmt.Errorf("timeout")

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestServerFailureStopsProxy: a server that stops serving on its own is
// reported, and the proxy stops, instead of running half-deaf.
func TestServerFailureStopsProxy(t *testing.T) {
	p := startProxy(t, nil)
	p.listeners[0].Close() // the admin listener, pulled from under its server
	select {
	case err := <-p.Failed():
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte("admin server")) {
			t.Errorf("Failed() = %v, want an error naming the admin server", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported")
	}
	select {
	case <-p.Done():
	case <-time.After(time.Second):
		t.Error("the proxy was not stopped")
	}
}

// TestIPv6ListenerIsV6Only: IPv6 addresses bind IPv6-only, so [::]:4143
// and 0.0.0.0:4143 can both be bound in a dual-stack pod.
func TestIPv6ListenerIsV6Only(t *testing.T) {
	l, err := listenOn("[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer l.Close()
	raw, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v6only int
	raw.Control(func(fd uintptr) {
		v6only, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY)
	})
	if err != nil || v6only != 1 {
		t.Errorf("IPV6_V6ONLY = %d (%v), want 1", v6only, err)
	}
}

func TestIPv6Unavailable(t *testing.T) {
	opErr := func(errno syscall.Errno) error { return &net.OpError{Op: "listen", Err: &osSyscallError{errno}} }
	for _, tc := range []struct {
		addr string
		err  error
		want bool
	}{
		{"[::]:4143", opErr(syscall.EAFNOSUPPORT), true},
		{"[::1]:4140", opErr(syscall.EADDRNOTAVAIL), true},
		{"[::]:4143", opErr(syscall.EADDRINUSE), false},
		{"0.0.0.0:4143", opErr(syscall.EAFNOSUPPORT), false},
		{"[::ffff:127.0.0.1]:4140", opErr(syscall.EADDRNOTAVAIL), false},
	} {
		if got := ipv6Unavailable(tc.addr, tc.err); got != tc.want {
			t.Errorf("ipv6Unavailable(%s, %v) = %v, want %v", tc.addr, tc.err, got, tc.want)
		}
	}
}

type osSyscallError struct{ errno syscall.Errno }

func (e *osSyscallError) Error() string { return e.errno.Error() }
func (e *osSyscallError) Unwrap() error { return e.errno }

// TestLocallyOpaquePortToDetectingPeer: a port the client's proxy treats as
// opaque (its own configuration) toward a meshed endpoint whose proxy does
// detect on that port (discovery: meshed, not opaque, no transport) is
// still mTLS, straight to the endpoint.
func TestLocallyOpaquePortToDetectingPeer(t *testing.T) {
	m := newMesh(t)
	app := listenTCP(t, halfCloseEcho)
	b := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = app; c.DetectTimeout = 200 * time.Millisecond })
	wire, tp := startTap(t, b.inbound)
	res := &routedResolver{target: "db:3306", pool: poolOf(wire, balance.Peer{Meshed: true, Identity: apiID})}
	a := startProxyWith(t, Options{Identity: m.identity(t, webID), Discovery: res}, func(c *Config) {
		c.DestinationAddr, c.OpaquePorts = "127.0.0.1:1", map[uint16]bool{3306: true}
	}, "db:3306")
	if got := exchange(t, a.bindings[0], "secret-query"); got != "secret-query|bye" {
		t.Fatalf("echo: got %q", got)
	}
	if bytes.Contains(tp.bytes(), []byte("secret-query")) {
		t.Error("payload crossed the wire in plaintext")
	}
}
