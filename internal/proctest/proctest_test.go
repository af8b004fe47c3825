package proctest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain lets the test binary play the binary under test: with
// PROCTEST_SERVE set it listens on port 0, reports its address in the
// --addr-file given, and serves /ready until killed.
func TestMain(m *testing.M) {
	if os.Getenv("PROCTEST_SERVE") != "" {
		serveForTest()
		return
	}
	os.Exit(m.Run())
}

func serveForTest() {
	path := os.Args[len(os.Args)-1] // ... --addr-file PATH
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(3)
	}
	if os.Getenv("PROCTEST_SERVE") == "exit" {
		os.Exit(4)
	}
	b := []byte(`{"admin": "` + l.Addr().String() + `"}`)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		os.Exit(5)
	}
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
}

// TestStartListening: the child's reported address serves while the test
// runs; after its cleanup the child is gone.
func TestStartListening(t *testing.T) {
	var addr string
	t.Run("child", func(t *testing.T) {
		addrs := StartListening(t, "child", []string{"PROCTEST_SERVE=1"}, os.Args[0], "-test.run=^$")
		addr = addrs["admin"]
		WaitReady(t, "http://"+addr+"/ready", 10*time.Second)
	})
	if addr == "" {
		t.Fatal("no address reported")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the child still serves on %s after cleanup", addr)
	}
}

// TestWaitReady: a server that turns ready after a few polls is waited for.
func TestWaitReady(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	WaitReady(t, srv.URL, 10*time.Second)
	if got := n.Load(); got < 3 {
		t.Fatalf("ready after %d polls, want 3", got)
	}
}

// TestFreeAddr: the address is on loopback and can be bound at once.
func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("binding %s: %v", addr, err)
	}
	l.Close()
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Errorf("FreeAddr = %s, want a 127.0.0.1 address", addr)
	}
}
