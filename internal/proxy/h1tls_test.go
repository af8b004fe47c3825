package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsH1Server is an HTTP/1 server over TLS on loopback that counts its
// connections and closes them after idle; tlsDial dials it as h1Client's
// dialer does a peer proxy (no ALPN offered).
func tlsH1Server(t *testing.T, idle time.Duration) (addr string, conns *atomic.Int64, dial func(ctx context.Context, addr string) (net.Conn, error)) {
	t.Helper()
	conns = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s tls=%v", r.Method, b, r.TLS != nil)
	}))
	srv.Config.IdleTimeout = idle
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = nil
	dial = func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: cfg}
		return d.DialContext(ctx, "tcp", addr)
	}
	return srv.Listener.Addr().String(), conns, dial
}

// TestH1ClientOverTLS: requests over TLS share one pooled connection, and
// one the server closed while idle (close_notify, then FIN) is noticed
// before reuse: a POST, which cannot be replayed, goes on a new one.
func TestH1ClientOverTLS(t *testing.T) {
	addr, conns, dial := tlsH1Server(t, 100*time.Millisecond)
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	for i := range 5 {
		_, got, err := h1Do(t, h, context.Background(), "POST", addr, "/", strings.NewReader(fmt.Sprint(i)))
		if want := fmt.Sprintf("POST %d tls=true", i); err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("5 sequential requests used %d TLS connections, want 1", got)
	}
	time.Sleep(400 * time.Millisecond) // the server closes the idle connection
	_, got, err := h1Do(t, h, context.Background(), "POST", addr, "/", strings.NewReader("late"))
	if want := "POST late tls=true"; err != nil || got != want {
		t.Fatalf("POST after the server closed the pooled connection: %q, %v; want %q on a new connection", got, err, want)
	}
	if got := conns.Load(); got != 2 {
		t.Errorf("server saw %d connections, want 2", got)
	}
}

// TestH1ClientPoolsPerPeerIdentity: connections to one address are pooled
// apart by the identity the peer had to prove (withUpstream), and plaintext
// ones apart from both: none is reused for a request that expects another.
func TestH1ClientPoolsPerPeerIdentity(t *testing.T) {
	addr, conns := h1CountingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var id string
		if u := upstreamOf(ctx); u != nil {
			id = u.peerID
		}
		mu.Lock()
		dialed = append(dialed, id)
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	h := newH1Client(dial, time.Minute, 4, 64<<10)
	defer h.CloseIdleConnections()
	for _, id := range []string{"a.id", "", "b.id", "a.id", "", "b.id"} {
		ctx := context.Background()
		if id != "" {
			ctx = withUpstream(ctx, "outbound", id, "")
		}
		if _, got, err := h1Do(t, h, ctx, "GET", addr, "/", nil); err != nil || got != "ok" {
			t.Fatalf("identity %q: %q, %v", id, got, err)
		}
	}
	if got, want := fmt.Sprint(dialed), fmt.Sprint([]string{"a.id", "", "b.id"}); got != want {
		t.Errorf("dialed for identities %s, want %s (one connection each, reused)", got, want)
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("server saw %d connections, want 3", got)
	}
}
