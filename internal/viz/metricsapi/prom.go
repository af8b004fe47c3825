package metricsapi

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Querier runs an instant PromQL query.
type Querier interface {
	Query(ctx context.Context, q string, at time.Time) (model.Vector, error)
}

// PromQuerier queries a Prometheus server over its HTTP API.
type PromQuerier struct {
	url string
	api promv1.API
}

// NewPromQuerier returns a querier for the Prometheus at url
// (http://prometheus.linkerd-viz.svc.cluster.local:9090).
func NewPromQuerier(url string) (*PromQuerier, error) {
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus url %q: %w", url, err)
	}
	return &PromQuerier{url: url, api: promv1.NewAPI(c)}, nil
}

// Query runs q at the given time; any failure is a *PrometheusError.
func (p *PromQuerier) Query(ctx context.Context, q string, at time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, q, at)
	if err != nil {
		return nil, &PrometheusError{URL: p.url, Err: err}
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, &PrometheusError{URL: p.url, Err: fmt.Errorf("query %q returned %s, not a vector", q, v.Type())}
	}
	return vec, nil
}

// selector is a PromQL label matcher set, rendered in sorted order.
type selector map[string]string

func (s selector) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, s[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (s selector) with(kv ...string) selector {
	out := selector{}
	for k, v := range s {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// promDuration renders d as a PromQL range ("90s").
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(math.Max(1, d.Seconds())))
}

// value is a sample's value, or nil for NaN/Inf (no data).
func value(s *model.Sample) *float64 {
	f := float64(s.Value)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}
