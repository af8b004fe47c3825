package trace

import (
	"encoding/hex"
	"net/http"
	"strings"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// Format is the header format a trace context arrived in; the proxy
// forwards the context in the same format so that the application's
// tracing library (which chose it) reads it back.
type Format uint8

// Formats, in the order Extract tries them.
const (
	FormatNone     Format = iota
	FormatW3C             // traceparent (and tracestate)
	FormatB3Single        // b3: {trace}-{span}-{sampled}-{parent}
	FormatB3Multi         // X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, ...
)

func (f Format) String() string {
	switch f {
	case FormatW3C:
		return "w3c"
	case FormatB3Single:
		return "b3"
	case FormatB3Multi:
		return "b3multi"
	}
	return "none"
}

// Header names, in Go's canonical form so that a lookup is one map access.
const (
	hdrTraceparent = "Traceparent"
	hdrTracestate  = "Tracestate"
	hdrB3          = "B3"
	hdrB3TraceID   = "X-B3-Traceid"
	hdrB3SpanID    = "X-B3-Spanid"
	hdrB3Parent    = "X-B3-Parentspanid"
	hdrB3Sampled   = "X-B3-Sampled"
	hdrB3Flags     = "X-B3-Flags"
)

// Incoming is a sampled trace context read from a request.
type Incoming struct {
	Format Format
	Parent oteltrace.SpanContext // remote, sampled
	// shortTraceID: a b3 trace id of 16 hex digits, forwarded as such.
	shortTraceID bool
}

// Extract reads a sampled trace context from h. It returns false, having
// allocated nothing, when h carries no trace context or an unsampled (or
// malformed) one: such a request is forwarded untouched and costs a few
// map lookups.
func Extract(h http.Header) (Incoming, bool) {
	if v, ok := h[hdrTraceparent]; ok && len(v) > 0 {
		return extractW3C(v[0], h[hdrTracestate])
	}
	if v, ok := h[hdrB3]; ok && len(v) > 0 {
		return extractB3Single(v[0])
	}
	if v, ok := h[hdrB3TraceID]; ok && len(v) > 0 {
		return extractB3Multi(v[0], h)
	}
	return Incoming{}, false
}

// extractW3C parses "00-<32 hex>-<16 hex>-<2 hex flags>" (W3C Trace
// Context level 1; later versions may append fields after the flags).
func extractW3C(tp string, ts []string) (Incoming, bool) {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || (len(tp) > 55 && tp[55] != '-') {
		return Incoming{}, false
	}
	if tp[:2] == "ff" || (tp[:2] == "00" && len(tp) != 55) {
		return Incoming{}, false
	}
	var flags [1]byte
	if _, err := hex.Decode(flags[:], []byte(tp[53:55])); err != nil || flags[0]&1 == 0 {
		return Incoming{}, false // unsampled (or malformed): nothing to record
	}
	tid, err := oteltrace.TraceIDFromHex(tp[3:35])
	if err != nil {
		return Incoming{}, false
	}
	sid, err := oteltrace.SpanIDFromHex(tp[36:52])
	if err != nil {
		return Incoming{}, false
	}
	cfg := oteltrace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: oteltrace.FlagsSampled, Remote: true}
	if len(ts) > 0 {
		if state, err := oteltrace.ParseTraceState(strings.Join(ts, ",")); err == nil {
			cfg.TraceState = state
		}
	}
	return Incoming{Format: FormatW3C, Parent: oteltrace.NewSpanContext(cfg)}, true
}

// extractB3Single parses "{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]";
// a lone "0", "1" or "d" carries a decision without ids (nothing to parent).
func extractB3Single(v string) (Incoming, bool) {
	parts := strings.Split(v, "-")
	if len(parts) < 3 || (parts[2] != "1" && parts[2] != "d") {
		// Without a sampling state the upstream deferred the decision;
		// the proxy does not start traces, so it records nothing.
		return Incoming{}, false
	}
	in, ok := b3IDs(parts[0], parts[1])
	in.Format = FormatB3Single
	return in, ok
}

func extractB3Multi(tid string, h http.Header) (Incoming, bool) {
	sampled := false
	if f := h.Get(hdrB3Flags); f == "1" {
		sampled = true // debug implies sampled
	}
	switch h.Get(hdrB3Sampled) {
	case "1", "true":
		sampled = true
	}
	if !sampled {
		return Incoming{}, false
	}
	in, ok := b3IDs(tid, h.Get(hdrB3SpanID))
	in.Format = FormatB3Multi
	return in, ok
}

func b3IDs(traceID, spanID string) (Incoming, bool) {
	short := len(traceID) == 16
	if short {
		traceID = "0000000000000000" + traceID
	}
	tid, err := oteltrace.TraceIDFromHex(traceID)
	if err != nil {
		return Incoming{}, false
	}
	sid, err := oteltrace.SpanIDFromHex(spanID)
	if err != nil {
		return Incoming{}, false
	}
	return Incoming{
		Parent:       oteltrace.NewSpanContext(oteltrace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: oteltrace.FlagsSampled, Remote: true}),
		shortTraceID: short,
	}, true
}

// Inject rewrites h's trace context, in the format it arrived in, so that
// sc (the proxy's span) is the parent of whatever the next hop records.
// tracestate is forwarded unchanged.
func (in Incoming) Inject(h http.Header, sc oteltrace.SpanContext) {
	tid, sid := sc.TraceID().String(), sc.SpanID().String()
	if in.shortTraceID {
		tid = tid[16:]
	}
	switch in.Format {
	case FormatW3C:
		h[hdrTraceparent] = []string{"00-" + tid + "-" + sid + "-01"}
	case FormatB3Single:
		h[hdrB3] = []string{tid + "-" + sid + "-1-" + in.Parent.SpanID().String()}
	case FormatB3Multi:
		h[hdrB3TraceID] = []string{tid}
		h[hdrB3SpanID] = []string{sid}
		h[hdrB3Parent] = []string{in.Parent.SpanID().String()}
		if _, debug := h[hdrB3Flags]; !debug {
			h[hdrB3Sampled] = []string{"1"}
		}
	}
}
