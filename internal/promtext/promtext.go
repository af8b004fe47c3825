// Package promtext reads the Prometheus text exposition format that every
// /metrics endpoint of Weft serves, with the prometheus/common parser, into
// samples a test (or a diagnostic) can add up by name and labels, from text
// (Sum) or from a /metrics URL (SumAt).
package promtext

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one line of the exposition: histograms and summaries are
// spelled out as their _bucket (le), quantile, _sum and _count samples.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Parse reads a text exposition.
func Parse(r io.Reader) ([]Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	var out []Sample
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(suffix string, v float64, extra ...string) {
				ls := labels
				if len(extra) == 2 {
					ls = make(map[string]string, len(labels)+1)
					for k, v := range labels {
						ls[k] = v
					}
					ls[extra[0]] = extra[1]
				}
				out = append(out, Sample{Name: name + suffix, Labels: ls, Value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add("", m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add("", m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), +1)
					add("_bucket", float64(b.GetCumulativeCount()), model.BucketLabel, formatFloat(b.GetUpperBound()))
				}
				if !inf {
					add("_bucket", float64(h.GetSampleCount()), model.BucketLabel, "+Inf")
				}
				add("_sum", h.GetSampleSum())
				add("_count", float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					add("", q.GetValue(), model.QuantileLabel, formatFloat(q.GetQuantile()))
				}
				add("_sum", s.GetSampleSum())
				add("_count", float64(s.GetSampleCount()))
			default:
				add("", m.GetUntyped().GetValue())
			}
		}
	}
	return out, nil
}

// Sum adds the values of the samples named name that carry every one of
// labels, each written as in the exposition: key="value". Bucket bounds
// (le) and quantiles compare as numbers.
func Sum(text, name string, labels ...string) (float64, error) {
	want := make(map[string]string, len(labels))
	for _, l := range labels {
		k, q, ok := strings.Cut(l, "=")
		if !ok {
			return 0, fmt.Errorf("label %q: want key=\"value\"", l)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return 0, fmt.Errorf("label %q: the value is not quoted: %w", l, err)
		}
		want[k] = v
	}
	samples, err := Parse(strings.NewReader(text))
	if err != nil {
		return 0, err
	}
	var total float64
	for _, s := range samples {
		if s.Name == name && matches(s.Labels, want) {
			total += s.Value
		}
	}
	return total, nil
}

// SumAt is Sum over what url (a /metrics) serves now, read with a 5 s
// timeout.
func SumAt(ctx context.Context, url, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	v, err := Sum(string(b), name, labels...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	return v, nil
}

func matches(have, want map[string]string) bool {
	for k, w := range want {
		h, ok := have[k]
		if !ok {
			return false
		}
		if h == w {
			continue
		}
		if k != model.BucketLabel && k != model.QuantileLabel {
			return false
		}
		hf, err1 := strconv.ParseFloat(h, 64)
		wf, err2 := strconv.ParseFloat(w, 64)
		if err1 != nil || err2 != nil || hf != wf {
			return false
		}
	}
	return true
}

func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
