package admin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestServer(shutdown func()) (*Server, *atomic.Bool, *slog.LevelVar) {
	ready := new(atomic.Bool)
	level := new(slog.LevelVar)
	s := New(Options{
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "request_total 1\n") }),
		Ready:    ready.Load,
		Level:    level,
		Shutdown: shutdown,
	})
	s.environ = func() []string {
		return []string{"LINKERD2_PROXY_LOG=info", "WEFT_PROXY_BINDINGS=x", "_pod_ns=default", "SECRET=hidden"}
	}
	return s, ready, level
}

func do(s http.Handler, method, path, body, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func TestReadyLiveMetrics(t *testing.T) {
	s, ready, _ := newTestServer(nil)
	tests := []struct {
		path     string
		ready    bool
		wantCode int
		wantBody string
	}{
		{"/live", false, 200, "live"},
		{"/ready", false, 503, "not ready"},
		{"/ready", true, 200, "ready"},
		{"/metrics", true, 200, "request_total 1"},
		{"/nope", true, 404, "not found"},
	}
	for _, tt := range tests {
		ready.Store(tt.ready)
		w := do(s, "GET", tt.path, "", "")
		if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantBody) {
			t.Errorf("GET %s (ready=%v) = %d %q, want %d containing %q", tt.path, tt.ready, w.Code, w.Body, tt.wantCode, tt.wantBody)
		}
	}
}

func TestShutdown(t *testing.T) {
	called := make(chan struct{}, 1)
	s, _, _ := newTestServer(func() { called <- struct{}{} })
	if w := do(s, "GET", "/shutdown", "", "127.0.0.1:5000"); w.Code != 405 {
		t.Errorf("GET /shutdown = %d, want 405", w.Code)
	}
	if w := do(s, "POST", "/shutdown", "", "198.18.0.7:5000"); w.Code != 403 {
		t.Errorf("POST /shutdown from a pod IP = %d, want 403", w.Code)
	}
	if w := do(s, "POST", "/shutdown", "", "[::1]:5000"); w.Code != 200 {
		t.Errorf("POST /shutdown from ::1 = %d, want 200", w.Code)
	}
	select {
	case <-called:
	case <-time.After(time.Second):
		t.Fatal("shutdown function not called")
	}
	disabled, _, _ := newTestServer(nil)
	if w := do(disabled, "POST", "/shutdown", "", "127.0.0.1:5000"); w.Code != 404 {
		t.Errorf("POST /shutdown when disabled = %d, want 404", w.Code)
	}
}

func TestLogLevel(t *testing.T) {
	s, _, level := newTestServer(nil)
	if w := do(s, "GET", "/proxy-log-level", "", ""); strings.TrimSpace(w.Body.String()) != "info" {
		t.Errorf("GET level = %q, want info", w.Body)
	}
	if w := do(s, "PUT", "/proxy-log-level", "warn,linkerd=debug", ""); w.Code != 204 {
		t.Errorf("PUT level = %d %q", w.Code, w.Body)
	}
	if level.Level() != slog.LevelWarn {
		t.Errorf("level = %v, want WARN", level.Level())
	}
	if w := do(s, "PUT", "/proxy-log-level", "loud", ""); w.Code != 400 || !strings.Contains(w.Body.String(), `"loud"`) {
		t.Errorf("PUT bad level = %d %q, want 400 naming it", w.Code, w.Body)
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"debug", slog.LevelDebug, false},
		{"trace", slog.LevelDebug, false},
		{" INFO\n", slog.LevelInfo, false},
		{"warn,linkerd=info", slog.LevelWarn, false},
		{"linkerd=error", slog.LevelError, false},
		{"", 0, true},
		{"verbose", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestEnvJSONShowsOnlyProxyVariables(t *testing.T) {
	s, _, _ := newTestServer(nil)
	body := do(s, "GET", "/env.json", "", "").Body.String()
	for _, want := range []string{"LINKERD2_PROXY_LOG", "WEFT_PROXY_BINDINGS", "_pod_ns"} {
		if !strings.Contains(body, want) {
			t.Errorf("env.json lacks %s: %s", want, body)
		}
	}
	if strings.Contains(body, "SECRET") {
		t.Errorf("env.json leaks unrelated variables: %s", body)
	}
}

// A control-plane admin server (no log level, no environment, no
// shutdown) serves /metrics, /ready and /live, and nothing else.
func TestControlPlaneAdmin(t *testing.T) {
	ready := false
	s := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up 1\n") }),
		Ready:   func() bool { return ready }})
	for _, tt := range []struct {
		method, path string
		ready        bool
		want         int
	}{
		{"GET", "/metrics", false, 200},
		{"GET", "/live", false, 200},
		{"GET", "/ready", false, 503},
		{"GET", "/ready", true, 200},
		{"GET", "/proxy-log-level", true, 404},
		{"GET", "/env.json", true, 404},
		{"POST", "/shutdown", true, 404},
	} {
		ready = tt.ready
		if got := do(s, tt.method, tt.path, "", "127.0.0.1:1234").Code; got != tt.want {
			t.Errorf("%s %s (ready %v): %d, want %d", tt.method, tt.path, tt.ready, got, tt.want)
		}
	}
}
