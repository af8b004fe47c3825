package promtext

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// exposition renders a real registry the way /metrics does.
func exposition(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "request_total", Help: "h"}, []string{"direction", "client_id"})
	c.WithLabelValues("inbound", "web.shop.serviceaccount").Add(3)
	c.WithLabelValues("inbound", "api.shop.serviceaccount").Add(4)
	c.WithLabelValues("outbound", "").Add(5)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "latency_seconds", Help: "h", Buckets: []float64{0.005, 1}})
	h.Observe(0.001)
	h.Observe(0.5)
	h.Observe(2)
	reg.MustRegister(c, h)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	w := &appender{&b}
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(w, f); err != nil {
			t.Fatal(err)
		}
	}
	return string(b)
}

type appender struct{ b *[]byte }

func (a *appender) Write(p []byte) (int, error) { *a.b = append(*a.b, p...); return len(p), nil }

func TestSum(t *testing.T) {
	text := exposition(t)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"request_total", nil, 12},
		{"request_total", []string{`direction="inbound"`}, 7},
		{"request_total", []string{`direction="inbound"`, `client_id="web.shop.serviceaccount"`}, 3},
		// Labels are compared whole, not as substrings.
		{"request_total", []string{`client_id="web.shop"`}, 0},
		{"request_total", []string{`direction="in"`}, 0},
		{"latency_seconds_count", nil, 3},
		{"latency_seconds_bucket", []string{`le="0.005"`}, 1},
		{"latency_seconds_bucket", []string{`le="1.0"`}, 2},
		{"latency_seconds_bucket", []string{`le="+Inf"`}, 3},
		{"latency_seconds_sum", nil, 2.501},
		{"absent_total", nil, 0},
	} {
		got, err := Sum(text, tc.name, tc.labels...)
		if err != nil {
			t.Fatalf("%s %v: %v", tc.name, tc.labels, err)
		}
		if got != tc.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestSumRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ text, label string }{
		{"request_total{a=\"1\"} 1\n", `a=1`},
		{"request_total{a=\"1\"} 1\n", `a`},
		{"request_total{a=\"1\" 1\n", `a="1"`},
	} {
		if _, err := Sum(tc.text, "request_total", tc.label); err == nil {
			t.Errorf("Sum(%q, %q): no error", tc.text, tc.label)
		}
	}
}

// TestSumAt: the sum over what a /metrics URL serves; a failing endpoint
// is an error naming it, not a zero.
func TestSumAt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "# TYPE request_total counter\nrequest_total{direction=\"inbound\"} 3\nrequest_total{direction=\"outbound\"} 4\n")
	}))
	defer srv.Close()
	tests := []struct {
		path    string
		labels  []string
		want    float64
		wantErr bool
	}{
		{"/metrics", nil, 7, false},
		{"/metrics", []string{`direction="inbound"`}, 3, false},
		{"/elsewhere", nil, 0, true},
	}
	for _, tt := range tests {
		got, err := SumAt(context.Background(), srv.URL+tt.path, "request_total", tt.labels...)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("SumAt(%s, %v) = %v, %v; want %v, error %v", tt.path, tt.labels, got, err, tt.want, tt.wantErr)
		}
	}
}
