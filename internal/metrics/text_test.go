package metrics

import (
	"compress/gzip"
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
// way Prometheus does (asking for protobuf and OpenMetrics first): the
// answer is the text format, gzipped only when the scraper accepts gzip,
// and parses back into the series the proxy counted.
func TestHandlerServesText(t *testing.T) {
	r := New(Options{ConstLabels: map[string]string{"pod": "web-1"}, BuildVersion: "v-test"})
	s := r.HTTP(Target{Direction: "inbound", Authority: "web:80", TLS: "disabled"})
	s.Request()
	s.Request()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	for _, tt := range []struct {
		acceptEncoding string
		wantGzip       bool
	}{
		{"gzip", true},
		{"deflate, gzip;q=1.0, *;q=0.5", true},
		{"", false},
		{"identity", false},
	} {
		t.Run("Accept-Encoding "+tt.acceptEncoding, func(t *testing.T) {
			mfs := scrape(t, srv.URL, tt.acceptEncoding, tt.wantGzip)
			for _, want := range []struct {
				name  string
				value float64
			}{
				{"request_total", 2},
				{"proxy_build_info", 1},
			} {
				mf := mfs[want.name]
				if mf == nil || len(mf.GetMetric()) != 1 {
					t.Errorf("%s: %v, want one series", want.name, mf)
					continue
				}
				m := mf.GetMetric()[0]
				if got := m.GetCounter().GetValue() + m.GetGauge().GetValue(); got != want.value {
					t.Errorf("%s = %v, want %v", want.name, got, want.value)
				}
				if !hasLabel(m, "pod", "web-1") {
					t.Errorf("%s: labels %v, want pod=web-1", want.name, m.GetLabel())
				}
			}
			for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
				if mfs[name] == nil {
					t.Errorf("%s not served", name)
				}
			}
		})
	}
}

// scrape GETs url as Prometheus does, checks the answer's headers and
// parses its body.
func scrape(t *testing.T, url, acceptEncoding string, wantGzip bool) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.3,*/*;q=0.1")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get("Content-Type"); got != TextContentType {
		t.Errorf("Content-Type %q, want %q", got, TextContentType)
	}
	var body io.Reader = resp.Body
	if got := resp.Header.Get("Content-Encoding"); (got == "gzip") != wantGzip || (got != "" && got != "gzip") {
		t.Fatalf("Content-Encoding %q, want gzip: %v", got, wantGzip)
	}
	if wantGzip {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	}
	text, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(text)))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return mfs
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
