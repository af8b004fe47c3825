package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/trace"
	"github.com/weftmesh/weft/internal/trace/tracetest"
)

const (
	rootTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	rootSpan  = "00f067aa0ba902b7"
)

// tracedPair is web's proxy (outbound) → api's proxy (inbound) → a backend
// that echoes the trace headers it received, over mTLS, both proxies
// exporting to col with protocol.
func tracedPair(t *testing.T, col *tracetest.Collector, protocol string) (client string, b *testProxy) {
	t.Helper()
	m := newMesh(t)
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled"} {
			if v := r.Header.Get(h); v != "" {
				w.Header().Set("Echo-"+h, v)
			}
		}
		io.WriteString(w, "ok")
	}))
	attrs := filepath.Join(t.TempDir(), "labels")
	os.WriteFile(attrs, []byte("app=\"api\"\npod-template-hash=\"5d8f\"\n"), 0o644)
	b = meshedProxy(t, m.identity(t, apiID), func(c *Config) {
		c.InboundForward = backend
		c.Trace = trace.Config{CollectorAddr: col.Addr, ServiceName: "api-proxy", Protocol: protocol, AttributesPath: attrs, FlushInterval: 50 * time.Millisecond}
		c.MetricsLabels = map[string]string{"namespace": "shop", "pod": "api-0"}
	})
	a := meshedProxy(t, m.identity(t, webID), func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"api.shop:80": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
		c.Trace = trace.Config{CollectorAddr: col.Addr, ServiceName: "web-proxy", Protocol: protocol, FlushInterval: 50 * time.Millisecond}
	}, "api.shop:80")
	return a.bindings[0], b
}

// checkHops checks one trace of two proxy hops: web's client span is the
// child of the caller's span, api's server span the child of web's, and
// the backend saw api's span as its parent.
func checkHops(t *testing.T, spans []tracetest.Span, parentOfBackend string) {
	t.Helper()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2: %v", len(spans), spans)
	}
	server, client := spans[0], spans[1] // sorted by service: api-proxy, web-proxy
	if client.Service != "web-proxy" || client.Kind != "client" || server.Service != "api-proxy" || server.Kind != "server" {
		t.Fatalf("spans = %v, want api-proxy server and web-proxy client", spans)
	}
	for _, s := range spans {
		if s.TraceID != rootTrace {
			t.Errorf("%s span: trace %s, want %s", s.Service, s.TraceID, rootTrace)
		}
	}
	if client.ParentID != rootSpan {
		t.Errorf("web's client span parent = %s, want the caller's span %s", client.ParentID, rootSpan)
	}
	if server.ParentID != client.SpanID {
		t.Errorf("api's server span parent = %s, want web's client span %s", server.ParentID, client.SpanID)
	}
	if parentOfBackend != server.SpanID {
		t.Errorf("backend's parent span = %s, want api's server span %s", parentOfBackend, server.SpanID)
	}
	wantAttrs := map[string]string{trace.AttrMethod: "GET", trace.AttrPath: "/orders/7", trace.AttrAuthority: "api.shop", trace.AttrStatusCode: "200"}
	for _, s := range spans {
		for k, v := range wantAttrs {
			if s.Attrs[k] != v {
				t.Errorf("%s span: %s = %q, want %q", s.Service, k, s.Attrs[k], v)
			}
		}
		if s.Name != "/orders/7" {
			t.Errorf("%s span name %q, want the path", s.Service, s.Name)
		}
	}
	if got := server.Attrs[trace.AttrClientID]; got != webID {
		t.Errorf("api's server span client.id = %q, want %q", got, webID)
	}
	if got := client.Attrs[trace.AttrServerID]; got != apiID {
		t.Errorf("web's client span server.id = %q, want %q", got, apiID)
	}
	for k, v := range map[string]string{"app": "api", "pod-template-hash": "5d8f", "k8s.namespace.name": "shop", "k8s.pod.name": "api-0"} {
		if server.Resource[k] != v {
			t.Errorf("api's resource %s = %q, want %q (attributes file, pod env)", k, server.Resource[k], v)
		}
	}
}

func TestTracePropagationAndExport(t *testing.T) {
	for _, tc := range []struct {
		name, protocol string
		headers        map[string]string
		// backendParent reads the parent span id the backend saw.
		backendParent func(h http.Header) (string, error)
	}{
		{name: "w3c otlp", protocol: trace.ProtocolOpenTelemetry,
			headers: map[string]string{"traceparent": "00-" + rootTrace + "-" + rootSpan + "-01", "tracestate": "vendor=v1"},
			backendParent: func(h http.Header) (string, error) {
				tp := h.Get("Echo-Traceparent")
				if h.Get("Echo-Tracestate") != "vendor=v1" {
					return "", fmt.Errorf("tracestate not forwarded: %q", h.Get("Echo-Tracestate"))
				}
				if !strings.HasPrefix(tp, "00-"+rootTrace+"-") || !strings.HasSuffix(tp, "-01") {
					return "", fmt.Errorf("traceparent %q", tp)
				}
				return tp[36:52], nil
			}},
		{name: "b3 multi otlp", protocol: trace.ProtocolOpenTelemetry,
			headers: map[string]string{"X-B3-TraceId": rootTrace, "X-B3-SpanId": rootSpan, "X-B3-Sampled": "1"},
			backendParent: func(h http.Header) (string, error) {
				if h.Get("Echo-X-B3-Traceid") != rootTrace || h.Get("Echo-X-B3-Sampled") != "1" || h.Get("Echo-Traceparent") != "" {
					return "", fmt.Errorf("b3 headers %v", h)
				}
				return h.Get("Echo-X-B3-Spanid"), nil
			}},
		{name: "b3 single opencensus", protocol: trace.ProtocolOpenCensus,
			headers: map[string]string{"b3": rootTrace + "-" + rootSpan + "-1"},
			backendParent: func(h http.Header) (string, error) {
				parts := strings.Split(h.Get("Echo-B3"), "-")
				if len(parts) != 4 || parts[0] != rootTrace || parts[2] != "1" {
					return "", fmt.Errorf("b3 header %q", h.Get("Echo-B3"))
				}
				return parts[1], nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := tracetest.OTLP(t, nil)
			if tc.protocol == trace.ProtocolOpenCensus {
				col = tracetest.OpenCensus(t)
			}
			client, _ := tracedPair(t, col, tc.protocol)
			req, _ := http.NewRequest("GET", "http://"+client+"/orders/7", nil)
			req.Host = "api.shop"
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			parent, err := tc.backendParent(resp.Header)
			if err != nil {
				t.Fatalf("backend's trace context: %v", err)
			}
			checkHops(t, col.Wait(t, 2, 5*time.Second), parent)
		})
	}
}

func TestTraceUnsampledRecordsNothingAndForwardsUntouched(t *testing.T) {
	col := tracetest.OTLP(t, nil)
	client, b := tracedPair(t, col, trace.ProtocolOpenTelemetry)
	tp := "00-" + rootTrace + "-" + rootSpan + "-00"
	for _, h := range []map[string]string{{"traceparent": tp}, {"X-B3-TraceId": rootTrace, "X-B3-SpanId": rootSpan, "X-B3-Sampled": "0"}, {}} {
		req, _ := http.NewRequest("GET", "http://"+client+"/x", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if h["traceparent"] != "" && resp.Header.Get("Echo-Traceparent") != tp {
			t.Errorf("unsampled traceparent changed: %q", resp.Header.Get("Echo-Traceparent"))
		}
	}
	b.tracer.ForceFlush(context.Background())
	time.Sleep(200 * time.Millisecond)
	if got := col.Spans(); len(got) != 0 {
		t.Errorf("unsampled requests exported %d spans: %v", len(got), got)
	}
}

// TestTraceMTLSToCollector: with identity on, spans go over mTLS to a
// collector that must present the configured identity; a collector with
// another identity gets nothing and the failures are counted.
func TestTraceMTLSToCollector(t *testing.T) {
	m := newMesh(t)
	collectorID := m.identity(t, apiID) // the "collector" runs as api
	col := tracetest.OTLP(t, collectorID.ServerConfig())
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tc := range []struct {
		name, want string
		spans      int
	}{{"right identity", apiID, 1}, {"wrong identity", "other.shop.serviceaccount.identity.linkerd.cluster.local", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(col.Spans())
			p := meshedProxy(t, m.identity(t, webID), func(c *Config) {
				c.Destinations = map[string][]EndpointSpec{"app:80": {{Addr: backend}}}
				c.Trace = trace.Config{CollectorAddr: col.Addr, CollectorName: tc.want, ServiceName: "web-proxy", FlushInterval: 20 * time.Millisecond, ExportTimeout: time.Second}
			}, "app:80")
			req, _ := http.NewRequest("GET", "http://"+p.bindings[0]+"/", nil)
			req.Header.Set("traceparent", "00-"+rootTrace+"-"+rootSpan+"-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tc.spans > 0 {
				col.Wait(t, before+tc.spans, 5*time.Second)
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for metricValue(t, p.metricsText(t), "trace_spans_dropped_total", map[string]string{"reason": "export_failed"}) < 1 {
				if time.Now().After(deadline) {
					t.Fatal("no export failure counted for a collector with the wrong identity")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got := len(col.Spans()); got != before {
				t.Errorf("collector with the wrong identity received %d spans", got-before)
			}
		})
	}
}

// TestTraceCollectorDownUnderLoad: 200 rps of sampled requests for 3 s
// with the collector down: every request succeeds, spans are dropped and
// counted, memory stays bounded.
func TestTraceCollectorDownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"app:80": {{Addr: backend}}}
		c.Trace = trace.Config{CollectorAddr: deadAddr(t), ServiceName: "web-proxy", QueueSize: 64, BatchSize: 16,
			FlushInterval: 20 * time.Millisecond, ExportTimeout: 200 * time.Millisecond}
	}, "app:80")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const rps, seconds = 200, 3
	var failed, ok atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rps)
	defer tick.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < rps*seconds; i++ {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", "http://"+p.bindings[0]+"/", nil)
			req.Header.Set("traceparent", fmt.Sprintf("00-%s-%016x-01", rootTrace, i+1))
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
				if resp != nil {
					resp.Body.Close()
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok.Add(1)
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed with the collector down", failed.Load(), rps*seconds)
	}
	text := p.metricsText(t)
	dropped := metricValue(t, text, "trace_spans_dropped_total", nil)
	exported := metricValue(t, text, "trace_spans_exported_total", nil)
	if dropped < rps*seconds/2 {
		t.Errorf("trace_spans_dropped_total = %v after %d sampled requests with the collector down, want most of them", dropped, rps*seconds)
	}
	if exported != 0 {
		t.Errorf("trace_spans_exported_total = %v with the collector down", exported)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d requests ok, spans dropped %v (queue 64), heap %d → %d KiB", ok.Load(), dropped, before.HeapAlloc>>10, after.HeapAlloc>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB with the collector down", growth>>20)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAccessLog(t *testing.T) {
	m := newMesh(t)
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(201)
		io.WriteString(w, "created!")
	}))
	for _, format := range []string{accesslog.FormatJSON, accesslog.FormatApache} {
		t.Run(format, func(t *testing.T) {
			sink := &syncBuffer{}
			b := startProxyWith(t, Options{Identity: m.identity(t, apiID), AccessLog: sink}, func(c *Config) { c.InboundForward = backend; c.AccessLog = format })
			a := meshedProxy(t, m.identity(t, webID), func(c *Config) {
				c.Destinations = map[string][]EndpointSpec{"api.shop:80": {{Addr: b.inbound, Proxy: true, Identity: apiID}}}
			}, "api.shop:80")
			req, _ := http.NewRequest("POST", "http://"+a.bindings[0]+"/orders?id=7", strings.NewReader("hello"))
			req.Host = "api.shop"
			req.Header.Set("User-Agent", "curl/8.5")
			req.Header.Set("traceparent", "00-"+rootTrace+"-"+rootSpan+"-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			b.access.Close()
			line := strings.TrimSpace(sink.String())
			if strings.Count(line, "\n") != 0 || line == "" {
				t.Fatalf("want one line, got %q", sink.String())
			}
			if format == accesslog.FormatApache {
				// %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"
				want := `127.0.0.1 - ` + webID + ` [`
				tail := `] "POST /orders?id=7 HTTP/1.1" 201 8 "-" "curl/8.5"`
				if !strings.HasPrefix(line, want) || !strings.HasSuffix(line, tail) {
					t.Errorf("apache line %q, want %q...%q", line, want, tail)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("json line %q: %v", line, err)
			}
			for k, v := range map[string]any{"trace_id": rootTrace, "client.id": webID, "method": "POST", "uri": "/orders?id=7",
				"status": float64(201), "response_bytes": "8", "request_bytes": "5", "user_agent": "curl/8.5", "host": "api.shop"} {
				if got[k] != v {
					t.Errorf("json %s = %v, want %v (line %s)", k, got[k], v, line)
				}
			}
			if !strings.HasPrefix(fmt.Sprint(got["client.addr"]), "127.0.0.1:") {
				t.Errorf("client.addr = %v", got["client.addr"])
			}
		})
	}
}

// TestAccessLogFloodNeverBlocks: a log writer that never returns does not
// slow requests; lines beyond the queue are dropped and counted.
func TestAccessLogFloodNeverBlocks(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	stuck := make(chan struct{})
	b := startProxyWith(t, Options{AccessLog: blockingWriter(stuck), AccessLogQueue: 8}, func(c *Config) { c.InboundForward = backend; c.AccessLog = accesslog.FormatJSON })
	t.Cleanup(func() { close(stuck) }) // before the proxy's shutdown (cleanups run last-first)
	start := time.Now()
	for i := 0; i < 200; i++ {
		resp, err := http.Get("http://" + b.inbound + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("200 requests took %v with a stuck access log", d)
	}
	if got := metricValue(t, b.metricsText(t), "access_log_dropped_total", nil); got < 190 {
		t.Errorf("access_log_dropped_total = %v, want ≥ 190 (queue 8, writer stuck)", got)
	}
}

type blockingWriter chan struct{}

func (b blockingWriter) Write(p []byte) (int, error) { <-b; return len(p), nil }
