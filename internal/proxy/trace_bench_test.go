package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/trace"
	"github.com/weftmesh/weft/internal/trace/tracetest"
)

// BenchmarkTraceOverhead compares what the proxy does per request for
// tracing: off, on with an unsampled request (no trace headers, and an
// unsampled traceparent), and on with a sampled one. The first three must
// not differ measurably.
//
//	go test -run '^$' -bench TraceOverhead -benchmem ./internal/proxy/
func BenchmarkTraceOverhead(b *testing.B) {
	col := tracetest.OTLP(b, nil)
	off := &Proxy{}
	tr, err := trace.New(trace.Config{CollectorAddr: col.Addr, ServiceName: "bench", QueueSize: 1 << 16, FlushInterval: 100 * time.Millisecond}, trace.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Shutdown(b.Context()) })
	on := &Proxy{tracer: tr}
	info := &connInfo{direction: compat.Outbound}
	for _, bc := range []struct {
		name    string
		p       *Proxy
		headers map[string]string
	}{
		{"off", off, map[string]string{"traceparent": "00-" + rootTrace + "-" + rootSpan + "-01"}},
		{"on-no-headers", on, nil},
		{"on-unsampled", on, map[string]string{"traceparent": "00-" + rootTrace + "-" + rootSpan + "-00"}},
		{"on-sampled", on, map[string]string{"traceparent": "00-" + rootTrace + "-" + rootSpan + "-01"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "http://api.shop/orders/7", nil)
			for k, v := range bc.headers {
				r.Header.Set(k, v)
			}
			tp := r.Header.Get("traceparent")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				if tp != "" {
					r.Header["Traceparent"][0] = tp // a sampled request's header is rewritten
				}
				ww, _, o := bc.p.observe(w, r, info)
				ww.WriteHeader(200)
				bc.p.done(o)
			}
		})
	}
}

// BenchmarkTraceRequest sends requests through a running proxy to a
// backend on loopback: tracing off, on without sampling, on sampled.
func BenchmarkTraceRequest(b *testing.B) {
	col := tracetest.OTLP(b, nil)
	backend := h2cServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for _, bc := range []struct {
		name    string
		tracing bool
		tp      string
	}{
		{"off", false, "00-" + rootTrace + "-" + rootSpan + "-01"},
		{"on-unsampled", true, "00-" + rootTrace + "-" + rootSpan + "-00"},
		{"on-sampled", true, "00-" + rootTrace + "-" + rootSpan + "-01"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := startProxy(b, func(c *Config) {
				c.Destinations = map[string][]EndpointSpec{"app:80": {{Addr: backend}}}
				if bc.tracing {
					c.Trace = trace.Config{CollectorAddr: col.Addr, ServiceName: "bench", QueueSize: 1 << 16}
				}
			}, "app:80")
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			url := "http://" + p.bindings[0] + "/orders/7"
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("traceparent", bc.tp)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
