package demo

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// sample is what one scrape of a proxy's /metrics says, summed per side.
type sample struct {
	ready   bool
	in      side               // inbound: requests this replica served
	out     side               // outbound: requests this replica sent
	retries map[string]float64 // outbound retries by logical destination
}

// side sums a direction's HTTP series.
type side struct {
	requests, responses, successes float64
	buckets                        map[float64]float64 // le → cumulative count
	byClient                       map[string]peer     // inbound: client_id → requests
	byTarget                       map[string]peer     // outbound: target_addr → requests
}

type peer struct {
	id       string // client_id or server_id
	requests float64
	tls      float64 // of which over mTLS
}

func newSide() side {
	return side{buckets: map[float64]float64{}, byClient: map[string]peer{}, byTarget: map[string]peer{}}
}

// scrape reads a proxy's readiness and metrics.
func scrape(ctx context.Context, client *http.Client, admin string) (sample, error) {
	s := sample{in: newSide(), out: newSide(), retries: map[string]float64{}}
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
		if err != nil {
			return nil, err
		}
		return client.Do(req)
	}
	if resp, err := get("/ready"); err == nil {
		s.ready = resp.StatusCode == http.StatusOK
		resp.Body.Close()
	}
	resp, err := get("/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s/metrics: %s", admin, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return s, fmt.Errorf("parsing %s/metrics: %w", admin, err)
	}
	sideOf := func(m *dto.Metric) *side {
		switch label(m, "direction") {
		case "inbound":
			return &s.in
		case "outbound":
			return &s.out
		}
		return nil
	}
	for _, m := range fams["request_total"].GetMetric() {
		sd := sideOf(m)
		if sd == nil {
			continue
		}
		v := m.GetCounter().GetValue()
		sd.requests += v
		tls := 0.0
		if label(m, "tls") == "true" {
			tls = v
		}
		if sd == &s.in {
			p := sd.byClient[label(m, "client_id")]
			p.id, p.requests, p.tls = label(m, "client_id"), p.requests+v, p.tls+tls
			sd.byClient[p.id] = p
		} else {
			addr := label(m, "target_addr")
			p := sd.byTarget[addr]
			p.id, p.requests, p.tls = label(m, "server_id"), p.requests+v, p.tls+tls
			sd.byTarget[addr] = p
		}
	}
	for _, m := range fams["request_retry_total"].GetMetric() {
		if label(m, "direction") == "outbound" {
			s.retries[label(m, "dst")] += m.GetCounter().GetValue()
		}
	}
	for _, m := range fams["response_total"].GetMetric() {
		if sd := sideOf(m); sd != nil {
			sd.responses += m.GetCounter().GetValue()
			if label(m, "classification") == "success" {
				sd.successes += m.GetCounter().GetValue()
			}
		}
	}
	for _, m := range fams["response_latency_ms"].GetMetric() {
		if sd := sideOf(m); sd != nil {
			for _, b := range m.GetHistogram().GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) {
					sd.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			}
			sd.buckets[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return s, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Frame is one refresh of the view: per service, per replica and per edge,
// rates over the last interval and totals since the start.
type Frame struct {
	Elapsed  float64        `json:"elapsed_seconds"`
	Final    bool           `json:"final,omitempty"`
	Services []ServiceStats `json:"services"`
	Replicas []ReplicaStats `json:"replicas"`
	Edges    []EdgeStats    `json:"edges"`
}

// ServiceStats are a service's golden metrics: from its proxies' inbound
// side, or, for a service nobody calls (the bot), their outbound side.
type ServiceStats struct {
	Name        string  `json:"name"`
	Side        string  `json:"side"` // inbound or outbound
	Ready       int     `json:"ready_proxies"`
	Replicas    int     `json:"replicas"`
	Requests    float64 `json:"requests_total"`
	Responses   float64 `json:"responses_total"`
	Successes   float64 `json:"successes_total"`
	Retries     float64 `json:"retries_total"` // by its clients' proxies
	RetryRate   float64 `json:"retries_per_second"`
	Window      float64 `json:"window_responses"`
	RPS         float64 `json:"rps"`
	SuccessRate float64 `json:"success_rate"` // successful responses over the window; 0 with none
	P50         float64 `json:"p50_ms"`
	P95         float64 `json:"p95_ms"`
	P99         float64 `json:"p99_ms"`
}

// ReplicaStats show how a service's load is balanced.
type ReplicaStats struct {
	Name     string  `json:"name"`
	Service  string  `json:"service"`
	Admin    string  `json:"admin"`
	Slow     bool    `json:"slow,omitempty"`
	Requests float64 `json:"requests_total"`
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_ms"`
}

// EdgeStats is traffic between two services, as both proxies saw it.
type EdgeStats struct {
	Src      string  `json:"src"`
	Dst      string  `json:"dst"`
	ClientID string  `json:"client_id"` // as the server's proxy verified it
	ServerID string  `json:"server_id"` // as the client's proxy verified it
	Requests float64 `json:"requests_total"`
	MTLS     bool    `json:"mtls"` // every request, on both sides, over mTLS
}

// frame computes a Frame from the previous and the current samples.
func frame(reps []*replica, svcs []service, prev, cur map[string]sample, dt time.Duration) Frame {
	var f Frame
	secs := dt.Seconds()
	byAddr := map[string]*replica{}
	for _, r := range reps {
		byAddr[r.endpoint] = r
	}
	for _, s := range svcs {
		st := ServiceStats{Name: s.name, Side: "inbound"}
		if !s.server {
			st.Side = "outbound"
		}
		var win side = newSide()
		for _, r := range reps {
			if r.svc.name != s.name {
				continue
			}
			st.Replicas++
			c, p := cur[r.name], prev[r.name]
			if c.ready {
				st.Ready++
			}
			cs, ps := c.in, p.in
			if !s.server {
				cs, ps = c.out, p.out
			}
			st.Requests += cs.requests
			st.Responses += cs.responses
			st.Successes += cs.successes
			win.requests += cs.requests - ps.requests
			win.responses += cs.responses - ps.responses
			win.successes += cs.successes - ps.successes
			for le, n := range cs.buckets {
				win.buckets[le] += n - ps.buckets[le]
			}
			if s.server {
				rs := ReplicaStats{Name: r.name, Service: s.name, Admin: r.admin, Slow: r.slow, Requests: cs.requests}
				if secs > 0 {
					rs.RPS = (cs.requests - ps.requests) / secs
				}
				rs.P50 = quantile(0.5, diff(cs.buckets, ps.buckets))
				f.Replicas = append(f.Replicas, rs)
			}
		}
		for _, r := range reps {
			for _, target := range []string{s.target(false), s.target(true)} {
				st.Retries += cur[r.name].retries[target]
				if secs > 0 {
					st.RetryRate += (cur[r.name].retries[target] - prev[r.name].retries[target]) / secs
				}
			}
		}
		st.Window = win.responses
		if secs > 0 {
			st.RPS = win.requests / secs
		}
		if win.responses > 0 {
			st.SuccessRate = win.successes / win.responses
		}
		st.P50, st.P95, st.P99 = quantile(0.5, win.buckets), quantile(0.95, win.buckets), quantile(0.99, win.buckets)
		f.Services = append(f.Services, st)
	}
	// Edges: the server side names the client; the client side names the server.
	type key struct{ src, dst string }
	edges := map[key]*EdgeStats{}
	for _, r := range reps {
		for addr, p := range cur[r.name].out.byTarget {
			dst := byAddr[addr]
			if dst == nil {
				continue
			}
			k := key{r.svc.name, dst.svc.name}
			if edges[k] == nil {
				edges[k] = &EdgeStats{Src: k.src, Dst: k.dst, MTLS: true}
			}
			edges[k].ServerID = p.id
			edges[k].MTLS = edges[k].MTLS && p.tls == p.requests
		}
	}
	for _, r := range reps {
		for id, p := range cur[r.name].in.byClient {
			src := ""
			for _, s := range svcs {
				if identity(s.name) == id {
					src = s.name
				}
			}
			k := key{src, r.svc.name}
			if edges[k] == nil {
				edges[k] = &EdgeStats{Src: src, Dst: r.svc.name, MTLS: true}
			}
			e := edges[k]
			e.ClientID = id
			e.Requests += p.requests
			e.MTLS = e.MTLS && p.tls == p.requests
		}
	}
	for _, e := range edges {
		f.Edges = append(f.Edges, *e)
	}
	sort.Slice(f.Edges, func(i, j int) bool {
		if f.Edges[i].Src != f.Edges[j].Src {
			return f.Edges[i].Src < f.Edges[j].Src
		}
		return f.Edges[i].Dst < f.Edges[j].Dst
	})
	return f
}

func diff(cur, prev map[float64]float64) map[float64]float64 {
	d := make(map[float64]float64, len(cur))
	for le, n := range cur {
		d[le] = n - prev[le]
	}
	return d
}

// quantile estimates the q-quantile from cumulative histogram buckets
// (upper bound → count) by linear interpolation inside the bucket, as
// Prometheus's histogram_quantile does; 0 when there are no observations.
func quantile(q float64, buckets map[float64]float64) float64 {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return 0
	}
	total := buckets[les[len(les)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range les {
		n := buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower // beyond the last finite bound: report that bound
			}
			if n == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return lower
}

func formatMs(v float64) string {
	switch {
	case v <= 0:
		return "-"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
	}
}
