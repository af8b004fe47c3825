package controller

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/admin"
	"github.com/weftmesh/weft/internal/serving"
	"github.com/weftmesh/weft/internal/serving/grpcserving"
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
	ls, err := serving.Listen(c.addr, c.adminAddr)
	if err != nil {
		return err
	}
	return serveOn(ctx, c, ls[0], ls[1])
}

// serveOn is serve on listeners already bound.
func serveOn(ctx context.Context, c component, l, adminL net.Listener) error {
	var stopping atomic.Bool
	adm := adminServer(c.log, c.metrics, func() bool { return !stopping.Load() && c.ready() })
	c.log.Info(c.name+" service started", append([]any{"addr", l.Addr().String(), "admin-addr", adminL.Addr().String()}, c.attrs...)...)
	return serving.Run(ctx, func(error) { stopping.Store(true) },
		grpcserving.Server(c.name+" gRPC server", l, c.srv, c.grace),
		serving.HTTP(c.name+" admin server", adminL, adm, 0))
}

// newRegistry is a component's metrics registry, holding the Go runtime's
// and the process's collectors (go_*, process_*: memory, CPU, goroutines
// on the control-plane dashboard).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newGRPCServer is a gRPC server whose RPCs are counted in reg
// (grpc_server_started_total, grpc_server_handled_total by method and code,
// grpc_server_handling_seconds). Call init once the services are
// registered, so every method's series exist from the start.
func newGRPCServer(reg *prometheus.Registry, opts ...grpc.ServerOption) (srv *grpc.Server, init func()) {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.001, .005, .01, .05, .1, .5, 1, 5})))
	reg.MustRegister(m)
	srv = grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()))...)
	return srv, func() { m.InitializeMetrics(srv) }
}

// adminServer serves /metrics, /ready and /live (the admin-http port).
func adminServer(log *slog.Logger, reg *prometheus.Registry, ready func() bool) *http.Server {
	return admin.NewServer(admin.Options{Log: log, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Ready: ready})
}
