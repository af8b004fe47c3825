// Package admin serves the proxy's admin endpoints on port 4191: /metrics,
// /ready, /live, /shutdown, /proxy-log-level and /env.json.
package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/weftmesh/weft/internal/compat"
)

// Server is the admin HTTP handler.
type Server struct {
	log      *slog.Logger
	metrics  http.Handler
	ready    *atomic.Bool
	level    *slog.LevelVar
	shutdown func() // nil when the shutdown endpoint is disabled
	environ  func() []string
}

// Options configure the admin handler.
type Options struct {
	Log     *slog.Logger
	Metrics http.Handler
	// Ready reports readiness; /ready answers 503 until it is true.
	Ready *atomic.Bool
	// Level is the live log level that /proxy-log-level reads and sets.
	Level *slog.LevelVar
	// Shutdown, when non-nil, enables POST /shutdown from loopback.
	Shutdown func()
}

// New returns the admin handler.
func New(o Options) *Server {
	return &Server{log: o.Log, metrics: o.Metrics, ready: o.Ready, level: o.Level, shutdown: o.Shutdown, environ: os.Environ}
}

// ServeHTTP routes admin requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		s.metrics.ServeHTTP(w, r)
	case "/live":
		io.WriteString(w, "live\n")
	case "/ready":
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	case "/shutdown":
		s.serveShutdown(w, r)
	case "/proxy-log-level":
		s.serveLogLevel(w, r)
	case "/env.json":
		s.serveEnv(w)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveShutdown(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if s.shutdown == nil {
		http.Error(w, "shutdown endpoint is not enabled", http.StatusNotFound)
		return
	}
	if !fromLoopback(r) {
		http.Error(w, "shutdown is only allowed from localhost", http.StatusForbidden)
		return
	}
	io.WriteString(w, "shutdown\n")
	s.log.Info("shutdown requested through the admin endpoint")
	go s.shutdown()
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) serveLogLevel(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		fmt.Fprintln(w, strings.ToLower(s.level.Level().String()))
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1024))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		lvl, err := ParseLevel(string(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.level.Set(lvl)
		s.log.Info("log level changed", "level", lvl)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) serveEnv(w http.ResponseWriter) {
	env := map[string]string{}
	for _, kv := range s.environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, compat.EnvProxyPrefix) || strings.HasPrefix(k, "WEFT_PROXY_") || strings.HasPrefix(k, "_pod_") {
			env[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(env)
}

// ParseLevel accepts a slog level name (debug, info, warn, error, also
// "trace" as debug) or a Linkerd-style directive list such as
// "warn,linkerd=info", whose first bare level is used.
func ParseLevel(s string) (slog.Level, error) {
	s = strings.TrimSpace(s)
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if strings.Contains(part, "=") || part == "" {
			continue
		}
		switch part {
		case "trace", "debug":
			return slog.LevelDebug, nil
		case "info":
			return slog.LevelInfo, nil
		case "warn", "warning":
			return slog.LevelWarn, nil
		case "error", "off":
			return slog.LevelError, nil
		}
		return 0, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", part)
	}
	if s == "" {
		return 0, fmt.Errorf("empty log level (want trace, debug, info, warn or error)")
	}
	// Only target directives: take the level of the first one.
	_, lvl, _ := strings.Cut(strings.Split(s, ",")[0], "=")
	return ParseLevel(lvl)
}
