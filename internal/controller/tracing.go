package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/trace"
)

// TraceOptions are a gRPC controller's tracing flags (Linkerd's
// controllers take -trace-collector). Without a collector nothing changes.
type TraceOptions struct {
	Collector   string // host:port; "" disables tracing
	Protocol    string // opentelemetry (default) or opencensus
	ServiceName string
}

func (o *TraceOptions) flags(f *pflag.FlagSet, serviceName string) {
	f.StringVar(&o.Collector, "trace-collector", "", "trace collector host:port: export a server span per gRPC call (plaintext); unset: no spans")
	f.StringVar(&o.Protocol, "trace-protocol", trace.ProtocolOpenTelemetry, "the collector's protocol: opentelemetry (OTLP/gRPC) or opencensus")
	f.StringVar(&o.ServiceName, "trace-service-name", serviceName, "the service name of the spans")
}

// serverTracing starts the tracer when a collector is configured and
// returns the gRPC server option that records a server span for every
// call (otelgrpc's stats handler, named after the full method, child of a
// W3C traceparent the caller sent), with its counters registered in reg,
// and the function that flushes and stops it. Without a collector: no
// option, no metrics, a no-op stop.
func serverTracing(o TraceOptions, reg *prometheus.Registry, log *slog.Logger) ([]grpc.ServerOption, func(), error) {
	cfg := trace.Config{CollectorAddr: o.Collector, Protocol: o.Protocol, ServiceName: o.ServiceName}
	if !cfg.Enabled() {
		return nil, func() {}, nil
	}
	m := trace.NewMetrics(nil)
	t, err := trace.New(cfg, trace.Options{Log: log, Metrics: m})
	if err != nil {
		return nil, nil, err
	}
	reg.MustRegister(m.Collectors()...)
	h := otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.Provider()),
		otelgrpc.WithPropagators(propagation.TraceContext{}))
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Shutdown(ctx); err != nil {
			log.Warn("trace shutdown", "err", err)
		}
	}
	log.Info("tracing gRPC calls", "collector", o.Collector, "protocol", cfg.Protocol, "service", o.ServiceName)
	return []grpc.ServerOption{grpc.StatsHandler(h)}, stop, nil
}
