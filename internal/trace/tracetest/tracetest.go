// Package tracetest runs in-process trace collectors for tests: a real
// gRPC server with the OTLP TraceService (OpenTelemetry's collector
// protos) or the OpenCensus agent TraceService (OpenCensus' protos),
// recording every span it receives in one flat form.
package tracetest

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ocagent "github.com/census-instrumentation/opencensus-proto/gen-go/agent/trace/v1"
	octrace "github.com/census-instrumentation/opencensus-proto/gen-go/trace/v1"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Span is one received span.
type Span struct {
	Service  string
	Resource map[string]string
	TraceID  string
	SpanID   string
	ParentID string // "" for a root
	Name     string
	Kind     string // "server", "client", ...
	Attrs    map[string]string
}

func (s Span) String() string {
	return fmt.Sprintf("%s %s %s span %s parent %s trace %s %v", s.Service, s.Kind, s.Name, s.SpanID, s.ParentID, s.TraceID, s.Attrs)
}

// Collector is a running receiver.
type Collector struct {
	Addr     string
	mu       sync.Mutex
	spans    []Span
	requests int
}

func (c *Collector) add(spans []Span) {
	c.mu.Lock()
	c.spans = append(c.spans, spans...)
	c.requests++
	c.mu.Unlock()
}

// Spans returns what was received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Wait waits up to timeout for at least n spans and returns them sorted by
// service then kind.
func (c *Collector) Wait(t testing.TB, n int, timeout time.Duration) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := c.Spans()
		if len(got) >= n || time.Now().After(deadline) {
			sort.Slice(got, func(i, j int) bool {
				if got[i].Service != got[j].Service {
					return got[i].Service < got[j].Service
				}
				return got[i].Kind < got[j].Kind
			})
			if len(got) < n {
				t.Fatalf("collector received %d spans within %v, want %d: %v", len(got), timeout, n, got)
			}
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func serve(t testing.TB, tlsCfg *tls.Config, register func(*grpc.Server)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	s := grpc.NewServer(opts...)
	register(s)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// OTLP starts an OTLP/gRPC trace receiver (TLS when tlsCfg is set).
func OTLP(t testing.TB, tlsCfg *tls.Config) *Collector {
	c := &Collector{}
	c.Addr = serve(t, tlsCfg, func(s *grpc.Server) { collectortrace.RegisterTraceServiceServer(s, &otlpServer{c: c}) })
	return c
}

type otlpServer struct {
	collectortrace.UnimplementedTraceServiceServer
	c *Collector
}

func (o *otlpServer) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var out []Span
	for _, rs := range req.ResourceSpans {
		res := kvs(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out = append(out, Span{Service: res["service.name"], Resource: res, TraceID: hex.EncodeToString(s.TraceId),
					SpanID: hex.EncodeToString(s.SpanId), ParentID: hex.EncodeToString(s.ParentSpanId), Name: s.Name,
					Kind: otlpKind(s.Kind), Attrs: kvs(s.Attributes)})
			}
		}
	}
	o.c.add(out)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func otlpKind(k tracepb.Span_SpanKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "SPAN_KIND_"))
}

func kvs(in []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range in {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.Key] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.Key] = fmt.Sprint(x.IntValue)
		default:
			out[kv.Key] = fmt.Sprint(v)
		}
	}
	return out
}

// OpenCensus starts an OpenCensus agent trace receiver.
func OpenCensus(t testing.TB) *Collector {
	c := &Collector{}
	c.Addr = serve(t, nil, func(s *grpc.Server) { ocagent.RegisterTraceServiceServer(s, &ocServer{c: c}) })
	return c
}

type ocServer struct {
	ocagent.UnimplementedTraceServiceServer
	c *Collector
}

// Export follows the agent protocol: the node (service name) comes in the
// stream's first message and holds until another names a new one.
func (o *ocServer) Export(stream ocagent.TraceService_ExportServer) error {
	service, res := "", map[string]string{}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := req.GetNode(); n != nil {
			service = n.GetServiceInfo().GetName()
		}
		if r := req.GetResource(); r != nil {
			res = r.GetLabels()
		}
		var out []Span
		for _, s := range req.Spans {
			attrs := map[string]string{}
			for k, v := range s.GetAttributes().GetAttributeMap() {
				switch x := v.GetValue().(type) {
				case *octrace.AttributeValue_StringValue:
					attrs[k] = x.StringValue.GetValue()
				case *octrace.AttributeValue_IntValue:
					attrs[k] = fmt.Sprint(x.IntValue)
				default:
					attrs[k] = fmt.Sprint(v)
				}
			}
			out = append(out, Span{Service: service, Resource: res, TraceID: hex.EncodeToString(s.TraceId),
				SpanID: hex.EncodeToString(s.SpanId), ParentID: hex.EncodeToString(s.ParentSpanId), Name: s.GetName().GetValue(),
				Kind: strings.ToLower(s.Kind.String()), Attrs: attrs})
		}
		o.c.add(out)
	}
}

func (o *ocServer) Config(ocagent.TraceService_ConfigServer) error { return nil }
