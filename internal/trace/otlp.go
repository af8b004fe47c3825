package trace

import (
	"context"
	"fmt"
	"log/slog"
	"math"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpExporter sends spans with one OTLP/gRPC TraceService.Export call per
// batch, as OpenTelemetry's otlptracegrpc exporter does with retries off
// (the batcher drops a batch that fails): the same request, built from the
// SDK's spans here, because otlptracegrpc (its configuration from
// OTEL_EXPORTER_OTLP_* variables, its retry and gzip machinery, its own
// metrics) added ~0.4 MB to weft-proxy's binary, which the kernel maps
// into every proxy's RSS (issue 17). ctx bounds the call.
type otlpExporter struct {
	client collectortrace.TraceServiceClient
	log    *slog.Logger
}

func newOTLPExporter(conn *grpc.ClientConn, log *slog.Logger) *otlpExporter {
	return &otlpExporter{client: collectortrace.NewTraceServiceClient(conn), log: log}
}

func (e *otlpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	rs := otlpResourceSpans(spans)
	if len(rs) == 0 {
		return nil
	}
	resp, err := e.client.Export(ctx, &collectortrace.ExportTraceServiceRequest{ResourceSpans: rs})
	if err != nil {
		return fmt.Errorf("OTLP export: %w", err)
	}
	// The collector took the request; spans it rejected are its verdict,
	// not worth a retry (nor does otlptracegrpc retry them).
	if ps := resp.GetPartialSuccess(); ps != nil && (ps.GetRejectedSpans() != 0 || ps.GetErrorMessage() != "") {
		e.log.Warn("trace collector rejected spans", "rejected", ps.GetRejectedSpans(), "message", ps.GetErrorMessage())
	}
	return nil
}

func (e *otlpExporter) Shutdown(context.Context) error { return nil } // the Tracer closes the connection

// otlpResourceSpans groups spans by resource, then by instrumentation
// scope, in the order they first appear.
func otlpResourceSpans(spans []sdktrace.ReadOnlySpan) []*tracepb.ResourceSpans {
	type scopeKey struct {
		res   attribute.Distinct
		scope instrumentation.Scope
	}
	var out []*tracepb.ResourceSpans
	byRes := map[attribute.Distinct]*tracepb.ResourceSpans{}
	byScope := map[scopeKey]*tracepb.ScopeSpans{}
	for _, s := range spans {
		if s == nil {
			continue
		}
		res, scope := s.Resource(), s.InstrumentationScope()
		rk := res.Equivalent()
		rs := byRes[rk]
		if rs == nil {
			rs = &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: otlpIter(res.Iter())}, SchemaUrl: res.SchemaURL()}
			byRes[rk] = rs
			out = append(out, rs)
		}
		sk := scopeKey{rk, scope}
		ss := byScope[sk]
		if ss == nil {
			ss = &tracepb.ScopeSpans{Scope: otlpScope(scope), Spans: []*tracepb.Span{}, SchemaUrl: scope.SchemaURL}
			byScope[sk] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, otlpSpan(s))
	}
	return out
}

func otlpScope(s instrumentation.Scope) *commonpb.InstrumentationScope {
	if s == (instrumentation.Scope{}) {
		return nil
	}
	return &commonpb.InstrumentationScope{Name: s.Name, Version: s.Version, Attributes: otlpIter(s.Attributes.Iter())}
}

func otlpSpan(s sdktrace.ReadOnlySpan) *tracepb.Span {
	sc, parent := s.SpanContext(), s.Parent()
	tid, sid := sc.TraceID(), sc.SpanID()
	st := s.Status()
	out := &tracepb.Span{
		TraceId:                tid[:],
		SpanId:                 sid[:],
		TraceState:             sc.TraceState().String(),
		Flags:                  otlpFlags(sc.TraceFlags(), parent),
		Name:                   s.Name(),
		Kind:                   otlpKind(s.SpanKind()),
		StartTimeUnixNano:      unixNano(s.StartTime().UnixNano()),
		EndTimeUnixNano:        unixNano(s.EndTime().UnixNano()),
		Attributes:             otlpKeyValues(s.Attributes()),
		DroppedAttributesCount: clamp32(s.DroppedAttributes()),
		DroppedEventsCount:     clamp32(s.DroppedEvents()),
		DroppedLinksCount:      clamp32(s.DroppedLinks()),
		Status:                 &tracepb.Status{Code: otlpStatus(st.Code), Message: st.Description},
	}
	if pid := parent.SpanID(); pid.IsValid() {
		out.ParentSpanId = pid[:]
	}
	for _, e := range s.Events() {
		out.Events = append(out.Events, &tracepb.Span_Event{Name: e.Name, TimeUnixNano: unixNano(e.Time.UnixNano()),
			Attributes: otlpKeyValues(e.Attributes), DroppedAttributesCount: clamp32(e.DroppedAttributeCount)})
	}
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		out.Links = append(out.Links, &tracepb.Span_Link{TraceId: ltid[:], SpanId: lsid[:],
			Attributes: otlpKeyValues(l.Attributes), DroppedAttributesCount: clamp32(l.DroppedAttributeCount),
			Flags: otlpFlags(l.SpanContext.TraceFlags(), l.SpanContext)})
	}
	return out
}

// otlpFlags is the W3C trace flags plus whether the parent (or the linked
// context) is remote, which OTLP's flags field carries in bits 8 and 9.
func otlpFlags(tf oteltrace.TraceFlags, parent oteltrace.SpanContext) uint32 {
	f := uint32(tf) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	if parent.IsRemote() {
		f |= uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
	}
	return f
}

func otlpKind(k oteltrace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case oteltrace.SpanKindInternal:
		return tracepb.Span_SPAN_KIND_INTERNAL
	case oteltrace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case oteltrace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case oteltrace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case oteltrace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	return tracepb.Span_SPAN_KIND_UNSPECIFIED
}

func otlpStatus(c codes.Code) tracepb.Status_StatusCode {
	switch c {
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR
	}
	return tracepb.Status_STATUS_CODE_UNSET
}

func otlpIter(it attribute.Iterator) []*commonpb.KeyValue {
	if it.Len() == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, 0, it.Len())
	for it.Next() {
		kv := it.Attribute()
		out = append(out, &commonpb.KeyValue{Key: string(kv.Key), Value: otlpValue(kv.Value)})
	}
	return out
}

func otlpKeyValues(kvs []attribute.KeyValue) []*commonpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*commonpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = &commonpb.KeyValue{Key: string(kv.Key), Value: otlpValue(kv.Value)}
	}
	return out
}

func otlpValue(v attribute.Value) *commonpb.AnyValue {
	switch v.Type() {
	case attribute.EMPTY:
		return &commonpb.AnyValue{}
	case attribute.BOOL:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v.AsBool()}}
	case attribute.INT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v.AsInt64()}}
	case attribute.FLOAT64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v.AsFloat64()}}
	case attribute.STRING:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v.AsString()}}
	case attribute.BYTESLICE:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: v.AsByteSlice()}}
	case attribute.BOOLSLICE:
		return otlpArray(v.AsBoolSlice(), func(b bool) *commonpb.AnyValue { return otlpValue(attribute.BoolValue(b)) })
	case attribute.INT64SLICE:
		return otlpArray(v.AsInt64Slice(), func(n int64) *commonpb.AnyValue { return otlpValue(attribute.Int64Value(n)) })
	case attribute.FLOAT64SLICE:
		return otlpArray(v.AsFloat64Slice(), func(f float64) *commonpb.AnyValue { return otlpValue(attribute.Float64Value(f)) })
	case attribute.STRINGSLICE:
		return otlpArray(v.AsStringSlice(), func(s string) *commonpb.AnyValue { return otlpValue(attribute.StringValue(s)) })
	case attribute.SLICE:
		return otlpArray(v.AsSlice(), otlpValue)
	case attribute.MAP:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: otlpKeyValues(v.AsMap())}}}
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "INVALID"}}
}

func otlpArray[T any](in []T, f func(T) *commonpb.AnyValue) *commonpb.AnyValue {
	vals := make([]*commonpb.AnyValue, len(in))
	for i, x := range in {
		vals[i] = f(x)
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}
}

func unixNano(n int64) uint64 { return uint64(max(0, n)) }

func clamp32(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) }
