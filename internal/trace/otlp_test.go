package trace

import (
	"context"
	"log/slog"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	sdktracetest "go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"
)

// recordingCollector is a real OTLP/gRPC trace receiver on loopback that
// keeps every request as it arrived.
type recordingCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*collectortrace.ExportTraceServiceRequest
	resp *collectortrace.ExportTraceServiceResponse
}

func (c *recordingCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	if c.resp != nil {
		return c.resp, nil
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *recordingCollector) take() []*collectortrace.ExportTraceServiceRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reqs
	c.reqs = nil
	return r
}

func startRecordingCollector(t *testing.T) (*recordingCollector, *grpc.ClientConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &recordingCollector{}
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, c)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, conn
}

// testSpans covers what a span can carry: every attribute type, events,
// links, each status and kind, remote and local parents, trace state,
// two resources and two scopes.
func testSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	tid := oteltrace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	ts, err := oteltrace.ParseTraceState("vendor=x,other=y")
	if err != nil {
		t.Fatal(err)
	}
	sc := func(sid byte, remote bool, flags oteltrace.TraceFlags) oteltrace.SpanContext {
		return oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: tid, SpanID: oteltrace.SpanID{sid, 1}, TraceFlags: flags, TraceState: ts, Remote: remote})
	}
	resA := resource.NewSchemaless(attribute.String("service.name", "web"), attribute.String("k8s.pod.name", "web-1"))
	resB := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.26.0", attribute.String("service.name", "db"))
	scope := instrumentation.Scope{Name: "weft-proxy"}
	scope2 := instrumentation.Scope{Name: "grpc", Version: "1.2", SchemaURL: "https://example.com/s", Attributes: attribute.NewSet(attribute.Bool("x", true))}
	start := time.Unix(1700000000, 123456789)
	allTypes := []attribute.KeyValue{
		attribute.String("http.method", "GET"), attribute.Int("http.status_code", 503), attribute.Bool("b", true),
		attribute.Float64("f", 2.5), attribute.StringSlice("ss", []string{"a", "b"}), attribute.IntSlice("is", []int{1, -2}),
		attribute.BoolSlice("bs", []bool{true, false}), attribute.Float64Slice("fs", []float64{0.5}),
		{Key: "empty"},
	}
	stubs := sdktracetest.SpanStubs{
		{Name: "/a", SpanContext: sc(1, false, oteltrace.FlagsSampled), Parent: sc(9, true, oteltrace.FlagsSampled), SpanKind: oteltrace.SpanKindServer,
			StartTime: start, EndTime: start.Add(7 * time.Millisecond), Attributes: allTypes, DroppedAttributes: 2,
			Status: sdktrace.Status{Code: codes.Error, Description: "Service Unavailable"}, Resource: resA, InstrumentationScope: scope},
		{Name: "/b", SpanContext: sc(2, false, oteltrace.FlagsSampled), Parent: sc(1, false, oteltrace.FlagsSampled), SpanKind: oteltrace.SpanKindClient,
			StartTime: start, EndTime: start.Add(time.Millisecond), Resource: resA, InstrumentationScope: scope,
			Events:        []sdktrace.Event{{Name: "sent", Time: start.Add(time.Microsecond), Attributes: []attribute.KeyValue{attribute.Int("size", 3)}, DroppedAttributeCount: 1}},
			Links:         []sdktrace.Link{{SpanContext: sc(7, true, 0), Attributes: []attribute.KeyValue{attribute.String("l", "v")}, DroppedAttributeCount: 4}},
			DroppedEvents: 1, DroppedLinks: 3, Status: sdktrace.Status{Code: codes.Ok}},
		{Name: "root", SpanContext: sc(3, false, 0), SpanKind: oteltrace.SpanKindInternal, StartTime: start, EndTime: start, Resource: resA, InstrumentationScope: scope2},
		{Name: "produce", SpanContext: sc(4, false, oteltrace.FlagsSampled), SpanKind: oteltrace.SpanKindProducer, StartTime: start, EndTime: start.Add(time.Second), Resource: resB, InstrumentationScope: scope},
		{Name: "consume", SpanContext: sc(5, false, oteltrace.FlagsSampled), SpanKind: oteltrace.SpanKindConsumer, Resource: resB},
	}
	return stubs.Snapshots()
}

// sortedResources orders a request's resource spans by their attributes:
// otlptracegrpc emits them in map order.
func sortedResources(r *collectortrace.ExportTraceServiceRequest) *collectortrace.ExportTraceServiceRequest {
	sort.Slice(r.ResourceSpans, func(i, j int) bool {
		return r.ResourceSpans[i].GetResource().String() < r.ResourceSpans[j].GetResource().String()
	})
	return r
}

// TestOTLPExportMatchesOpenTelemetrysExporter sends the same spans to a real
// OTLP/gRPC receiver through OpenTelemetry's otlptracegrpc exporter and
// through Weft's: the receiver gets the same request from both.
func TestOTLPExportMatchesOpenTelemetrysExporter(t *testing.T) {
	col, conn := startRecordingCollector(t)
	spans := testSpans(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ref, err := otlptracegrpc.New(ctx, otlptracegrpc.WithGRPCConn(conn), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.ExportSpans(ctx, spans); err != nil {
		t.Fatalf("otlptracegrpc: %v", err)
	}
	want := col.take()
	if err := newOTLPExporter(conn, slog.New(slog.DiscardHandler)).ExportSpans(ctx, spans); err != nil {
		t.Fatalf("weft's exporter: %v", err)
	}
	got := col.take()
	if len(got) != 1 || len(want) != 1 {
		t.Fatalf("requests: weft %d, otlptracegrpc %d, want 1 each", len(got), len(want))
	}
	if n := len(got[0].ResourceSpans); n != 2 {
		t.Errorf("%d resource spans, want 2", n)
	}
	if d := cmp.Diff(sortedResources(want[0]), sortedResources(got[0]), protocmp.Transform()); d != "" {
		t.Errorf("request differs from otlptracegrpc's (-otlptracegrpc +weft):\n%s", d)
	}
}

// TestOTLPExportErrors: a failed call is an error (the batcher counts and
// drops the batch); a partial success is not; nothing to send sends nothing.
func TestOTLPExportErrors(t *testing.T) {
	col, conn := startRecordingCollector(t)
	exp := newOTLPExporter(conn, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exp.ExportSpans(ctx, nil); err != nil || len(col.take()) != 0 {
		t.Errorf("no spans: err %v, want nil and no request", err)
	}
	col.resp = &collectortrace.ExportTraceServiceResponse{PartialSuccess: &collectortrace.ExportTracePartialSuccess{RejectedSpans: 1, ErrorMessage: "too old"}}
	if err := exp.ExportSpans(ctx, testSpans(t)); err != nil {
		t.Errorf("partial success: %v, want nil", err)
	}
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if err := exp.ExportSpans(done, testSpans(t)); err == nil {
		t.Error("cancelled context: nil error, want one")
	}
}
