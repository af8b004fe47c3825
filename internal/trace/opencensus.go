package trace

import (
	"context"
	"fmt"
	"os"
	"sync"

	occommon "github.com/census-instrumentation/opencensus-proto/gen-go/agent/common/v1"
	ocagent "github.com/census-instrumentation/opencensus-proto/gen-go/agent/trace/v1"
	ocresource "github.com/census-instrumentation/opencensus-proto/gen-go/resource/v1"
	octrace "github.com/census-instrumentation/opencensus-proto/gen-go/trace/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftmesh/weft/internal/version"
)

// ocExporter sends spans over the OpenCensus agent protocol (the
// TraceService.Export stream: the first message names the node, each
// message carries a batch), as Tempo's and the OpenTelemetry Collector's
// opencensus receivers take them.
type ocExporter struct {
	client ocagent.TraceServiceClient
	node   *occommon.Node
	res    *ocresource.Resource

	mu     sync.Mutex
	stream ocagent.TraceService_ExportClient
	cancel context.CancelFunc
}

func newOpenCensusExporter(conn *grpc.ClientConn, service string, res *resource.Resource) *ocExporter {
	host, _ := os.Hostname()
	labels := map[string]string{}
	for _, kv := range res.Attributes() {
		labels[string(kv.Key)] = kv.Value.Emit()
	}
	return &ocExporter{
		client: ocagent.NewTraceServiceClient(conn),
		node: &occommon.Node{
			Identifier:  &occommon.ProcessIdentifier{HostName: host, Pid: uint32(os.Getpid()), StartTimestamp: timestamppb.Now()},
			LibraryInfo: &occommon.LibraryInfo{Language: occommon.LibraryInfo_GO_LANG, ExporterVersion: version.Version},
			ServiceInfo: &occommon.ServiceInfo{Name: service},
		},
		res: &ocresource.Resource{Labels: labels},
	}
}

// ExportSpans sends one batch, opening the stream (and naming the node)
// first when there is none; a failed send drops the stream so that the
// next batch opens a new one. ctx bounds the send.
func (e *ocExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	req := &ocagent.ExportTraceServiceRequest{Spans: make([]*octrace.Span, 0, len(spans))}
	for _, s := range spans {
		req.Spans = append(req.Spans, ocSpan(s))
	}
	if e.stream == nil {
		sctx, cancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(ctx, cancel) // opening waits for a connection: bounded by ctx too
		stream, err := e.client.Export(sctx)
		stop()
		if err != nil {
			cancel()
			return fmt.Errorf("opening the OpenCensus export stream: %w", err)
		}
		e.stream, e.cancel = stream, cancel
		req.Node, req.Resource = e.node, e.res
	}
	// A send blocked by flow control ends with ctx: the stream is cancelled.
	stop := context.AfterFunc(ctx, e.cancel)
	err := e.stream.Send(req)
	stop()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		e.cancel()
		e.stream, e.cancel = nil, nil
		return fmt.Errorf("OpenCensus export: %w", err)
	}
	return nil
}

func (e *ocExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stream != nil {
		e.stream.CloseSend()
		e.cancel()
		e.stream, e.cancel = nil, nil
	}
	return nil
}

func ocSpan(s sdktrace.ReadOnlySpan) *octrace.Span {
	sc, parent := s.SpanContext(), s.Parent()
	tid, sid := sc.TraceID(), sc.SpanID()
	out := &octrace.Span{
		TraceId:    tid[:],
		SpanId:     sid[:],
		Name:       &octrace.TruncatableString{Value: s.Name()},
		StartTime:  timestamppb.New(s.StartTime()),
		EndTime:    timestamppb.New(s.EndTime()),
		Attributes: &octrace.Span_Attributes{AttributeMap: map[string]*octrace.AttributeValue{}},
	}
	if parent.IsValid() {
		pid := parent.SpanID()
		out.ParentSpanId = pid[:]
	}
	switch s.SpanKind() {
	case oteltrace.SpanKindServer:
		out.Kind = octrace.Span_SERVER
	case oteltrace.SpanKindClient:
		out.Kind = octrace.Span_CLIENT
	}
	for _, kv := range s.Attributes() {
		out.Attributes.AttributeMap[string(kv.Key)] = ocValue(kv.Value)
	}
	if st := s.Status(); st.Code == codes.Error {
		out.Status = &octrace.Status{Code: 2, Message: st.Description} // UNKNOWN
	}
	return out
}

func ocValue(v attribute.Value) *octrace.AttributeValue {
	switch v.Type() {
	case attribute.INT64:
		return &octrace.AttributeValue{Value: &octrace.AttributeValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.BOOL:
		return &octrace.AttributeValue{Value: &octrace.AttributeValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.FLOAT64:
		return &octrace.AttributeValue{Value: &octrace.AttributeValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	}
	return &octrace.AttributeValue{Value: &octrace.AttributeValue_StringValue{StringValue: &octrace.TruncatableString{Value: v.Emit()}}}
}
