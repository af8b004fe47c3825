package trace

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	oteltrace "go.opentelemetry.io/otel/trace"
)

const (
	tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid = "00f067aa0ba902b7"
)

func TestExtract(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    Format // FormatNone: not sampled / not extracted
		wantTID string
	}{
		{"w3c sampled", map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01"}, FormatW3C, tid},
		{"w3c sampled other flags", map[string]string{"traceparent": "00-" + tid + "-" + sid + "-03"}, FormatW3C, tid},
		{"w3c unsampled", map[string]string{"traceparent": "00-" + tid + "-" + sid + "-00"}, FormatNone, ""},
		{"w3c zero trace id", map[string]string{"traceparent": "00-00000000000000000000000000000000-" + sid + "-01"}, FormatNone, ""},
		{"w3c version ff", map[string]string{"traceparent": "ff-" + tid + "-" + sid + "-01"}, FormatNone, ""},
		{"w3c v00 with extra field", map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01-xx"}, FormatNone, ""},
		{"w3c future version with extra field", map[string]string{"traceparent": "01-" + tid + "-" + sid + "-01-xx"}, FormatW3C, tid},
		{"w3c truncated", map[string]string{"traceparent": "00-" + tid + "-" + sid}, FormatNone, ""},
		{"w3c bad hex", map[string]string{"traceparent": "00-" + tid[:31] + "z-" + sid + "-01"}, FormatNone, ""},
		{"b3 single sampled", map[string]string{"b3": tid + "-" + sid + "-1"}, FormatB3Single, tid},
		{"b3 single debug with parent", map[string]string{"b3": tid + "-" + sid + "-d-" + sid}, FormatB3Single, tid},
		{"b3 single 64-bit trace id", map[string]string{"b3": tid[16:] + "-" + sid + "-1"}, FormatB3Single, "0000000000000000" + tid[16:]},
		{"b3 single unsampled", map[string]string{"b3": tid + "-" + sid + "-0"}, FormatNone, ""},
		{"b3 single deferred", map[string]string{"b3": tid + "-" + sid}, FormatNone, ""},
		{"b3 single deny only", map[string]string{"b3": "0"}, FormatNone, ""},
		{"b3 multi sampled", map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "1"}, FormatB3Multi, tid},
		{"b3 multi true", map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "true"}, FormatB3Multi, tid},
		{"b3 multi debug flag", map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Flags": "1"}, FormatB3Multi, tid},
		{"b3 multi unsampled", map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "0"}, FormatNone, ""},
		{"b3 multi no span id", map[string]string{"X-B3-TraceId": tid, "X-B3-Sampled": "1"}, FormatNone, ""},
		{"none", map[string]string{"x-request-id": "1"}, FormatNone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			in, ok := Extract(h)
			if got := map[bool]Format{true: in.Format, false: FormatNone}[ok]; got != tc.want {
				t.Fatalf("format = %v (ok %v), want %v", got, ok, tc.want)
			}
			if ok && in.Parent.TraceID().String() != tc.wantTID {
				t.Errorf("trace id %s, want %s", in.Parent.TraceID(), tc.wantTID)
			}
			if ok && (in.Parent.SpanID().String() != sid || !in.Parent.IsSampled() || !in.Parent.IsRemote()) {
				t.Errorf("parent %+v", in.Parent)
			}
		})
	}
}

func TestInjectKeepsFormat(t *testing.T) {
	newSpan, _ := oteltrace.SpanIDFromHex("1111111111111111")
	for _, tc := range []struct {
		name string
		in   map[string]string
		want map[string]string
	}{
		{"w3c", map[string]string{"traceparent": "00-" + tid + "-" + sid + "-01", "tracestate": "a=1"},
			map[string]string{"Traceparent": "00-" + tid + "-1111111111111111-01", "Tracestate": "a=1"}},
		{"b3 single", map[string]string{"b3": tid[16:] + "-" + sid + "-1"},
			map[string]string{"B3": tid[16:] + "-1111111111111111-1-" + sid}},
		{"b3 multi", map[string]string{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "1"},
			map[string]string{"X-B3-Traceid": tid, "X-B3-Spanid": "1111111111111111", "X-B3-Parentspanid": sid, "X-B3-Sampled": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.in {
				h.Set(k, v)
			}
			in, ok := Extract(h)
			if !ok {
				t.Fatal("not extracted")
			}
			sc := in.Parent.WithSpanID(newSpan)
			in.Inject(h, sc)
			got := map[string]string{}
			for k := range h {
				got[k] = h.Get(k)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("headers (-want +got):\n%s", d)
			}
		})
	}
}

func TestReadAttributes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "labels")
	os.WriteFile(p, []byte("app=\"web\"\npod-template-hash=\"5d8f\"\nquoted=\"a \\\"b\\\"\"\n\n"), 0o644)
	got, err := ReadAttributes(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"app": "web", "pod-template-hash": "5d8f", "quoted": `a "b"`}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := ReadAttributes(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file: no error")
	}
	os.WriteFile(p, []byte("no-equals-sign\n"), 0o644)
	if _, err := ReadAttributes(p); err == nil {
		t.Error("a malformed line: no error")
	}
}
