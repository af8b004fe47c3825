package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
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
// /ready to 503 and stops gracefully within the grace period. A server that
// stops serving by itself ends the component with an error naming it.
func serve(ctx context.Context, c component) error {
	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", c.name, err)
	}
	al, err := net.Listen("tcp", c.adminAddr)
	if err != nil {
		l.Close()
		return fmt.Errorf("%s admin listener: %w", c.name, err)
	}
	return serveOn(ctx, c, l, al)
}

// serveOn is serve on listeners already bound.
func serveOn(ctx context.Context, c component, l, adminL net.Listener) error {
	var stopping atomic.Bool
	admin := adminServer(c.metrics, func() bool { return !stopping.Load() && c.ready() })
	c.log.Info(c.name+" service started", append([]any{"addr", l.Addr().String(), "admin-addr", adminL.Addr().String()}, c.attrs...)...)
	return runServers(ctx, func() { stopping.Store(true) },
		server{name: fmt.Sprintf("%s gRPC server on %s", c.name, l.Addr()), serve: func() error { return c.srv.Serve(l) },
			stop: func() {
				stopped := make(chan struct{})
				go func() { c.srv.GracefulStop(); close(stopped) }()
				select {
				case <-stopped:
				case <-time.After(c.grace):
					c.srv.Stop()
				}
			}},
		server{name: fmt.Sprintf("%s admin server on %s", c.name, adminL.Addr()), serve: func() error { return admin.Serve(adminL) },
			stop: func() { admin.Close() }})
}

// server is one of a component's servers, for runServers.
type server struct {
	name  string       // in errors: "injector webhook server on 127.0.0.1:8443"
	serve func() error // blocks while serving
	stop  func()       // makes serve return
}

// runServers runs the servers until ctx ends, then calls draining (e.g.
// /ready turns 503) and stops them in order, returning nil. A server whose
// serve returns before that — a failed TLS setup, a listener closed under
// it — stops the others the same way, and runServers returns its error,
// naming it; it never goes on with one server silently gone.
func runServers(ctx context.Context, draining func(), servers ...server) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(func() error {
			err := s.serve()
			if gctx.Err() != nil {
				return nil // asked to stop (http.ErrServerClosed, or nil from gRPC)
			}
			if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
				err = errors.New("stopped serving")
			}
			return fmt.Errorf("%s: %w", s.name, err)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		draining()
		for _, s := range servers {
			s.stop()
		}
		return nil
	})
	return g.Wait()
}

// adminServer serves /metrics, /ready and /live (the admin-http port).
func adminServer(reg *prometheus.Registry, ready func() bool) *http.Server {
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
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}
