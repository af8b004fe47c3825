package await

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// proxyAdmin is a stand-in admin server: not ready for the first polls,
// then ready; it counts /shutdown calls.
func proxyAdmin(t *testing.T, notReadyPolls int32) (addr string, shutdowns *atomic.Int32) {
	var polls atomic.Int32
	shutdowns = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ready" && polls.Add(1) > notReadyPolls:
			w.Write([]byte("ready\n"))
		case r.URL.Path == "/ready":
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		case r.URL.Path == "/shutdown" && r.Method == http.MethodPost:
			shutdowns.Add(1)
			w.Write([]byte("shutdown\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), shutdowns
}

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		command   []string
		shutdown  bool
		wantCode  int
		wantShuts int32
	}{
		{"exit status passed through, proxy shut down", []string{"sh", "-c", "exit 3"}, true, 3, 1},
		{"success", []string{"true"}, true, 0, 1},
		{"no shutdown asked", []string{"true"}, false, 0, 0},
		{"only wait", nil, true, 0, 0},
		{"command missing", []string{"/nonexistent/cmd"}, true, 127, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin, shuts := proxyAdmin(t, 3)
			code, err := Run(context.Background(), Options{Admin: admin, Timeout: 10 * time.Second, Shutdown: tt.shutdown, Command: tt.command})
			if code != tt.wantCode {
				t.Errorf("exit code %d (%v), want %d", code, err, tt.wantCode)
			}
			if got := shuts.Load(); got != tt.wantShuts {
				t.Errorf("%d shutdowns, want %d", got, tt.wantShuts)
			}
		})
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	admin, _ := proxyAdmin(t, 1<<30)
	start := time.Now()
	err := WaitReady(context.Background(), admin, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready in time") {
		t.Fatalf("err %v, want a timeout naming readiness", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v, want about 300ms", d)
	}
}
