package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestHandlerServesText scrapes the registry over a real HTTP server the
// way Prometheus does (asking for protobuf, OpenMetrics and gzip first):
// the answer is the plain text format, uncompressed, and parses back into
// the series the proxy counted.
func TestHandlerServesText(t *testing.T) {
	r := New(Options{ConstLabels: map[string]string{"pod": "web-1"}, BuildVersion: "v-test"})
	s := r.HTTP(Target{Direction: "inbound", Authority: "web:80", TLS: "disabled"})
	s.Request()
	s.Request()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.3,*/*;q=0.1")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != TextContentType {
		t.Errorf("Content-Type %q, want %q", got, TextContentType)
	}
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("Content-Encoding %q, want none", got)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	tests := []struct {
		name string
		want float64
	}{
		{"request_total", 2},
		{"proxy_build_info", 1},
	}
	for _, tt := range tests {
		mf := mfs[tt.name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			t.Errorf("%s: %v, want one series", tt.name, mf)
			continue
		}
		m := mf.GetMetric()[0]
		got := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
		if !hasLabel(m, "pod", "web-1") {
			t.Errorf("%s: labels %v, want pod=web-1", tt.name, m.GetLabel())
		}
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if mfs[name] == nil {
			t.Errorf("%s not served", name)
		}
	}
}

type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("collector broke"))
}

// TestHandlerGatherError: a collector's error is a 500 naming it, as
// promhttp's default handler answers.
func TestHandlerGatherError(t *testing.T) {
	r := New(Options{})
	if err := r.Register(failingCollector{prometheus.NewDesc("broken", "A broken collector.", nil, nil)}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "collector broke") {
		t.Errorf("got %d %q, want 500 naming the collector's error", resp.StatusCode, body)
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
