package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// component is one control-plane gRPC service with its admin port.
type component struct {
	name      string
	addr      string
	adminAddr string
	srv       *grpc.Server
	metrics   *prometheus.Registry
	ready     func() bool   // asked on every /ready
	grace     time.Duration // for in-flight RPCs after ctx ends; streams are then cut
	log       *slog.Logger
	attrs     []any // logged with the start line
}

// serve listens, serves the gRPC and admin ports until ctx ends, then turns
// /ready to 503 and stops gracefully within the grace period.
func serve(ctx context.Context, c component) error {
	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", c.name, err)
	}
	var stopping atomic.Bool
	admin, err := serveAdmin(c.adminAddr, c.metrics, func() bool { return !stopping.Load() && c.ready() })
	if err != nil {
		l.Close()
		return err
	}
	go c.srv.Serve(l)
	c.log.Info(c.name+" service started", append([]any{"addr", l.Addr().String()}, c.attrs...)...)
	<-ctx.Done()
	stopping.Store(true)
	stopped := make(chan struct{})
	go func() { c.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(c.grace):
		c.srv.Stop()
	}
	admin.Close()
	return nil
}

// serveAdmin serves /metrics, /ready and /live (the admin-http port).
func serveAdmin(addr string, reg *prometheus.Registry, ready func() bool) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/live", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("live\n")) })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return srv, nil
}
