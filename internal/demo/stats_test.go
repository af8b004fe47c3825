package demo

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		buckets map[float64]float64
		q, want float64
	}{
		{"empty", map[float64]float64{}, 0.5, 0},
		{"no observations", map[float64]float64{1: 0, inf: 0}, 0.5, 0},
		{"all in first bucket", map[float64]float64{10: 4, 20: 4, inf: 4}, 0.5, 5},
		{"interpolated", map[float64]float64{10: 0, 20: 10, inf: 10}, 0.5, 15},
		{"p99 in second", map[float64]float64{10: 50, 20: 100, inf: 100}, 0.99, 19.8},
		{"beyond the last bound", map[float64]float64{10: 1, inf: 10}, 0.99, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.q, tt.buckets); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestFrame(t *testing.T) {
	svcs := services(40*time.Millisecond, 0.1)
	reps, err := plan(svcs, false)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*replica{}
	for i, r := range reps {
		r.endpoint = fmt.Sprintf("127.0.0.1:%d", 41430+i) // what its proxy would report
		byName[r.name] = r
	}
	voting := byName["voting-0"]
	inf := math.Inf(1)
	s := func(req, resp, ok float64) side {
		sd := newSide()
		sd.requests, sd.responses, sd.successes = req, resp, ok
		sd.buckets = map[float64]float64{1: resp / 2, 10: resp, inf: resp}
		return sd
	}
	prev := map[string]sample{"voting-0": {ready: true, in: s(100, 100, 90)}, "web-0": {ready: true, out: s(100, 100, 100)}}
	curVoting := sample{ready: true, in: s(300, 300, 250)}
	curVoting.in.byClient[identity("web")] = peer{id: identity("web"), requests: 300, tls: 300}
	curWeb := sample{ready: true, out: s(300, 300, 300)}
	curWeb.out.byTarget[voting.endpoint] = peer{id: identity("voting"), requests: 300, tls: 299}
	cur := map[string]sample{"voting-0": curVoting, "web-0": curWeb}
	f := frame(reps, svcs, prev, cur, 2*time.Second)

	var got ServiceStats
	for _, st := range f.Services {
		if st.Name == "voting" {
			got = st
		}
	}
	want := ServiceStats{Name: "voting", Side: "inbound", Ready: 1, Replicas: 1, Requests: 300, Responses: 300,
		Successes: 250, Window: 200, RPS: 100, SuccessRate: 0.8, P50: 1, P95: 9.1, P99: 9.82}
	if math.Abs(got.P95-want.P95) > 1e-9 || math.Abs(got.P99-want.P99) > 1e-9 {
		t.Errorf("p95, p99 = %v, %v, want %v, %v", got.P95, got.P99, want.P95, want.P99)
	}
	got.P95, got.P99 = want.P95, want.P99
	if got != want {
		t.Errorf("voting:\n got %+v\nwant %+v", got, want)
	}
	if len(f.Edges) != 1 {
		t.Fatalf("edges %+v, want web → voting only", f.Edges)
	}
	e := f.Edges[0]
	if e.Src != "web" || e.Dst != "voting" || e.ClientID != identity("web") || e.ServerID != identity("voting") || e.Requests != 300 {
		t.Errorf("edge %+v", e)
	}
	if e.MTLS {
		t.Errorf("edge %+v marked mTLS though the client saw one request in plaintext", e)
	}

	var b strings.Builder
	render(&b, f, false)
	for _, want := range []string{"voting", "80.00%", "100.0", "×", identity("web")} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the view lacks %q:\n%s", want, b.String())
		}
	}
}
