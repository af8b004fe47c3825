package controller

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/admin"
	"github.com/weftmesh/weft/internal/serving"
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
	return serving.Run(ctx, func() { stopping.Store(true) },
		serving.GRPC(c.name+" gRPC server", l, c.srv, c.grace),
		serving.HTTP(c.name+" admin server", adminL, adm, 0))
}

// adminServer serves /metrics, /ready and /live (the admin-http port).
func adminServer(log *slog.Logger, reg *prometheus.Registry, ready func() bool) *http.Server {
	return admin.NewServer(admin.Options{Log: log, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Ready: ready})
}
