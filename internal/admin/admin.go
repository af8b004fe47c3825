// Package admin serves every binary's admin endpoints: /metrics, /ready
// and /live for all (the control plane's admin-http ports), and for the
// proxy (port 4191) also /shutdown, /proxy-log-level and /env.json.
package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// Server is the admin HTTP handler.
type Server struct {
	log      *slog.Logger
	metrics  http.Handler
	ready    func() bool
	level    *slog.LevelVar
	shutdown func()          // nil when the shutdown endpoint is disabled
	environ  func() []string // nil: no /env.json
}

// Options configure the admin handler.
type Options struct {
	Log     *slog.Logger
	Metrics http.Handler
	// Ready is asked on every /ready, which answers 503 while it is false.
	Ready func() bool
	// Level, when non-nil, is the live log level that /proxy-log-level
	// reads and sets.
	Level *slog.LevelVar
	// Shutdown, when non-nil, enables POST /shutdown from loopback.
	Shutdown func()
	// Environ, when non-nil, lists the environment /env.json shows the
	// proxy's variables of (os.Environ).
	Environ func() []string
}

// New returns the admin handler.
func New(o Options) *Server {
	return &Server{log: o.Log, metrics: o.Metrics, ready: o.Ready, level: o.Level, shutdown: o.Shutdown, environ: o.Environ}
}

// NewServer is the admin HTTP server of a binary.
func NewServer(o Options) *http.Server {
	return &http.Server{Handler: New(o), ReadHeaderTimeout: 10 * time.Second}
}

// ServeHTTP routes admin requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		s.metrics.ServeHTTP(w, r)
	case "/live":
		io.WriteString(w, "live\n")
	case "/ready":
		if !s.ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	case "/shutdown":
		s.serveShutdown(w, r)
	case "/proxy-log-level":
		if s.level == nil {
			http.NotFound(w, r)
			return
		}
		s.serveLogLevel(w, r)
	case "/env.json":
		if s.environ == nil {
			http.NotFound(w, r)
			return
		}
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
