// Package trace is the proxy's distributed tracing: it reads a sampled
// trace context from a request (W3C traceparent/tracestate, b3 single and
// multi headers), records a server span for each inbound request and a
// client span for each outbound one as children of that context, forwards
// the context in the format it arrived in with the proxy's span as the new
// parent, and exports the spans in batches through a bounded queue over
// OTLP/gRPC (OpenTelemetry SDK) or OpenCensus (the OpenCensus agent
// protocol), optionally over mTLS to a meshed collector. A request
// without a sampled context costs a few header lookups and nothing else.
package trace

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/compat"
)

// Protocols of the collector.
const (
	ProtocolOpenTelemetry = compat.TraceProtocolOpenTelemetry
	ProtocolOpenCensus    = compat.TraceProtocolOpenCensus
)

// Span attribute keys the proxy sets.
const (
	AttrMethod     = "http.method"
	AttrPath       = "http.path"
	AttrAuthority  = "http.authority"
	AttrStatusCode = "http.status_code"
	AttrDirection  = "direction"
	AttrClientID   = "client.id" // inbound: the mTLS client's identity
	AttrServerID   = "server.id" // outbound: the identity the endpoint presented
	AttrPeerAddr   = "net.peer.addr"
)

// Config says where and how spans go. A zero CollectorAddr disables tracing.
type Config struct {
	CollectorAddr  string // host:port
	CollectorName  string // the identity the collector must present (mTLS when identity is on)
	AttributesPath string // a downward-API file of key="value" lines
	ServiceName    string
	Protocol       string // opentelemetry (default) or opencensus

	QueueSize     int           // spans waiting for export; beyond: dropped
	BatchSize     int           // spans per export call
	FlushInterval time.Duration // longest a span waits for a batch to fill
	ExportTimeout time.Duration // one export call; then the batch is dropped
}

// Enabled reports whether a collector is configured.
func (c Config) Enabled() bool { return c.CollectorAddr != "" }

// Validate checks the protocol.
func (c Config) Validate() error {
	switch c.Protocol {
	case "", ProtocolOpenTelemetry, ProtocolOpenCensus:
		return nil
	}
	return fmt.Errorf("trace protocol %q: want %s or %s", c.Protocol, ProtocolOpenTelemetry, ProtocolOpenCensus)
}

// Options carry the tracer's collaborators.
type Options struct {
	Log *slog.Logger
	// ClientTLS, when set, gives the mTLS client configuration for a
	// server that must present the named identity (the proxy's identity).
	ClientTLS func(serverID string) *tls.Config
	// Attributes are added to the resource (e.g. the pod's namespace and
	// name), after the attributes file.
	Attributes map[string]string
	Metrics    *Metrics
}

// Tracer records and exports the proxy's spans. A nil *Tracer records nothing.
type Tracer struct {
	tp   *sdktrace.TracerProvider
	tr   oteltrace.Tracer
	conn *grpc.ClientConn
}

// New starts a tracer exporting to cfg's collector. The connection is made
// lazily: a collector that is down does not delay the proxy.
func New(cfg Config, o Options) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	def(&cfg.QueueSize, 2048)
	def(&cfg.BatchSize, 512)
	def(&cfg.FlushInterval, time.Second)
	def(&cfg.ExportTimeout, 5*time.Second)
	attrs := []attribute.KeyValue{}
	if cfg.AttributesPath != "" {
		file, err := ReadAttributes(cfg.AttributesPath)
		if err != nil {
			// Linkerd's proxy goes on without them; so does Weft.
			o.Log.Warn("trace attributes file unreadable; spans go without its attributes", "path", cfg.AttributesPath, "err", err)
		}
		attrs = appendSorted(attrs, file)
	}
	attrs = appendSorted(attrs, o.Attributes)
	attrs = append(attrs, attribute.String("service.name", cfg.ServiceName))
	res := resource.NewSchemaless(attrs...)

	creds := insecure.NewCredentials()
	if o.ClientTLS != nil && cfg.CollectorName != "" {
		creds = credentials.NewTLS(o.ClientTLS(cfg.CollectorName))
	}
	conn, err := grpc.NewClient(cfg.CollectorAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("trace collector %s: %w", cfg.CollectorAddr, err)
	}
	var exp sdktrace.SpanExporter
	switch cfg.Protocol {
	case ProtocolOpenCensus:
		exp = newOpenCensusExporter(conn, cfg.ServiceName, res)
	default:
		exp, err = otlptracegrpc.New(context.Background(), otlptracegrpc.WithGRPCConn(conn),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}), otlptracegrpc.WithTimeout(cfg.ExportTimeout))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("OTLP exporter: %w", err)
		}
	}
	b := newBatcher(exp, o.Log, cfg.QueueSize, cfg.BatchSize, cfg.FlushInterval, cfg.ExportTimeout, o.Metrics)
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSpanProcessor(b),
		sdktrace.WithSampler(sdktrace.AlwaysSample())) // only sampled contexts reach Start
	return &Tracer{tp: tp, tr: tp.Tracer("weft-proxy"), conn: conn}, nil
}

func def[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

func appendSorted(attrs []attribute.KeyValue, m map[string]string) []attribute.KeyValue {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, attribute.String(k, m[k]))
	}
	return attrs
}

// Shutdown exports what is queued, within ctx, and closes the connection.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	err := t.tp.Shutdown(ctx)
	return errors.Join(err, t.conn.Close())
}

// ForceFlush exports every ended span now (tests, shutdown).
func (t *Tracer) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Span is one span the proxy records for a request.
type Span struct {
	s oteltrace.Span
}

// Start records a span for r if it carries a sampled trace context (else
// it returns nil and touches nothing): a server span for an inbound
// request, a client span for an outbound one. It rewrites r's trace
// headers so that the new span is the parent of the next hop's.
func (t *Tracer) Start(r *http.Request, inbound bool, clientID string) *Span {
	if t == nil {
		return nil
	}
	in, ok := Extract(r.Header)
	if !ok {
		return nil
	}
	kind, dir := oteltrace.SpanKindClient, "outbound"
	if inbound {
		kind, dir = oteltrace.SpanKindServer, "inbound"
	}
	attrs := []attribute.KeyValue{
		attribute.String(AttrMethod, r.Method),
		attribute.String(AttrPath, r.URL.Path),
		attribute.String(AttrAuthority, r.Host),
		attribute.String(AttrDirection, dir),
	}
	if clientID != "" {
		attrs = append(attrs, attribute.String(AttrClientID, clientID))
	}
	ctx := oteltrace.ContextWithRemoteSpanContext(context.Background(), in.Parent)
	_, s := t.tr.Start(ctx, r.URL.Path, oteltrace.WithSpanKind(kind), oteltrace.WithAttributes(attrs...))
	in.Inject(r.Header, s.SpanContext())
	return &Span{s: s}
}

// TraceID is the span's trace id in hex ("" for nil).
func (s *Span) TraceID() string {
	if s == nil {
		return ""
	}
	return s.s.SpanContext().TraceID().String()
}

// Peer records the endpoint an outbound request went to and the identity
// it presented.
func (s *Span) Peer(addr, serverID string) {
	if s == nil {
		return
	}
	s.s.SetAttributes(attribute.String(AttrPeerAddr, addr))
	if serverID != "" {
		s.s.SetAttributes(attribute.String(AttrServerID, serverID))
	}
}

// End finishes the span with the response status (5xx marks an error).
func (s *Span) End(status int) {
	if s == nil {
		return
	}
	s.s.SetAttributes(attribute.Int(AttrStatusCode, status))
	if status >= 500 {
		s.s.SetStatus(codes.Error, http.StatusText(status))
	}
	s.s.End()
}

// ReadAttributes parses a downward-API file of key="value" lines (the
// pod's labels, for example), as Kubernetes writes it: values are
// Go-quoted strings.
func ReadAttributes(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading trace attributes: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return out, fmt.Errorf("%s:%d: want key=\"value\", got %q", path, n, line)
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}

// Provider is the tracer's OpenTelemetry TracerProvider, for instrumentation
// that makes spans of its own (the controllers' gRPC servers). Nil for a
// nil *Tracer.
func (t *Tracer) Provider() oteltrace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}
