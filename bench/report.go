package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// fortioResult is the part of fortio's -json output the benchmark reads.
type fortioResult struct {
	ActualQPS         float64
	ActualDuration    int64 // nanoseconds
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Max         float64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	ErrorsDurationHistogram struct {
		Count int64
	}
}

func parseFortio(r io.Reader) (*fortioResult, error) {
	var f fortioResult
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing fortio JSON: %w", err)
	}
	return &f, nil
}

// percentileMs returns the percentile in milliseconds, or -1 if absent.
func (f *fortioResult) percentileMs(p float64) float64 {
	for _, q := range f.DurationHistogram.Percentiles {
		if q.Percentile == p {
			return q.Value * 1000
		}
	}
	return -1
}

// ok200 is the share of 200 responses among all requests.
func (f *fortioResult) ok200() (ok, total int64) {
	for code, n := range f.RetCodes {
		total += n
		if code == "200" {
			ok += n
		}
	}
	return ok, total
}

// Row is one target's results.
type Row struct {
	Target       string  `json:"target"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	AddedP50Ms   float64 `json:"added_p50_ms"`
	AddedP99Ms   float64 `json:"added_p99_ms"`
	AddedP999Ms  float64 `json:"added_p999_ms"`
	FixedQPS     float64 `json:"fixed_qps"`
	MaxQPS       float64 `json:"max_qps"`
	RSSIdleKiB   int64   `json:"rss_idle_kib"`
	RSSLoadKiB   int64   `json:"rss_load_kib"`
	CPUPer10k    float64 `json:"cpu_seconds_per_10k_requests"`
	Requests     int64   `json:"requests"`
	Non200       int64   `json:"non_200"`
	Note         string  `json:"note,omitempty"`
	HasProcesses bool    `json:"-"`
}

// Report is the whole run.
type Report struct {
	Date     string   `json:"date"`
	Machine  string   `json:"machine"`
	Duration string   `json:"phase_duration"`
	QPS      int      `json:"fixed_qps"`
	Conns    int      `json:"connections"`
	BodySize int      `json:"body_bytes"`
	Rows     []Row    `json:"rows"`
	Targets  []Target `json:"targets"`
}

// Target is a stated goal and whether this run met it.
type Target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

func (r *Report) row(name string) *Row {
	for i := range r.Rows {
		if r.Rows[i].Target == name {
			return &r.Rows[i]
		}
	}
	return nil
}

// evaluate compares weft's single hop and pair with the product's stated
// targets.
func (r *Report) evaluate() {
	w, h, n := r.row("weft-proxy"), r.row("haproxy"), r.row("httputil.ReverseProxy")
	if w == nil {
		return
	}
	add := func(goal, measured string, met bool) { r.Targets = append(r.Targets, Target{goal, measured, met}) }
	if h != nil && h.MaxQPS > 0 {
		ratio := w.MaxQPS / h.MaxQPS
		add("max throughput ≥ 1.0× haproxy", fmt.Sprintf("%.2f×", ratio), ratio >= 1.0)
		add("added p99 at fixed rate ≤ haproxy's", fmt.Sprintf("%.3f ms vs %.3f ms", w.AddedP99Ms, h.AddedP99Ms), w.AddedP99Ms <= h.AddedP99Ms)
	}
	if n != nil && n.MaxQPS > 0 {
		ratio := w.MaxQPS / n.MaxQPS
		add("max throughput ≥ 1.3× httputil.ReverseProxy", fmt.Sprintf("%.2f×", ratio), ratio >= 1.3)
	}
	add("idle RSS ≤ 10 MiB", fmt.Sprintf("%.1f MiB", float64(w.RSSIdleKiB)/1024), w.RSSIdleKiB <= 10*1024)
	add("RSS at fixed rate ≤ 20 MiB", fmt.Sprintf("%.1f MiB", float64(w.RSSLoadKiB)/1024), w.RSSLoadKiB <= 20*1024)
	r.evaluatePair()
}

// evaluatePair compares the weft-proxy pair with the haproxy pair in the
// same layout (issue 17's goals; RSS is per proxy, the pair's sum halved).
func (r *Report) evaluatePair() {
	w, h := r.row("weft-proxy pair"), r.row("haproxy pair")
	if w == nil || h == nil || h.MaxQPS <= 0 {
		return
	}
	add := func(goal, measured string, met bool) { r.Targets = append(r.Targets, Target{goal, measured, met}) }
	ratio := w.MaxQPS / h.MaxQPS
	add("pair: max throughput ≥ 1.0× haproxy pair", fmt.Sprintf("%.2f×", ratio), ratio >= 1.0)
	add("pair: added p99 at fixed rate ≤ haproxy pair's", fmt.Sprintf("%.3f ms vs %.3f ms", w.AddedP99Ms, h.AddedP99Ms), w.AddedP99Ms <= h.AddedP99Ms)
	if h.CPUPer10k > 0 {
		cpu := w.CPUPer10k / h.CPUPer10k
		add("pair: CPU per request ≤ 1.25× haproxy pair's", fmt.Sprintf("%.2f× (%.3f vs %.3f s / 10k)", cpu, w.CPUPer10k, h.CPUPer10k), cpu <= 1.25)
	}
	add("pair: idle RSS per proxy ≤ 10 MiB", fmt.Sprintf("%.1f MiB", float64(w.RSSIdleKiB)/2048), w.RSSIdleKiB <= 2*10*1024)
	add("pair: RSS per proxy at fixed rate ≤ 20 MiB", fmt.Sprintf("%.1f MiB", float64(w.RSSLoadKiB)/2048), w.RSSLoadKiB <= 2*20*1024)
}

// Markdown renders the report as tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Proxy benchmark (%s)\n\n", r.Date)
	if r.Machine != "" {
		fmt.Fprintf(&b, "Machine: %s.\n\n", r.Machine)
	}
	fmt.Fprintf(&b, "fortio, HTTP/1.1 keep-alive, %d connections, %d-byte responses; fixed rate %d rps; phases of %s.\n", r.Conns, r.BodySize, r.QPS, r.Duration)
	fmt.Fprintf(&b, "Latency is at the fixed rate; \"added\" is the target minus direct. Max rps is with -qps 0.\n\n")
	b.WriteString("| target | p50 ms | p99 ms | p99.9 ms | max ms | added p50 | added p99 | added p99.9 | max rps | RSS idle MiB | RSS load MiB | CPU s / 10k req |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, w := range r.Rows {
		rss := func(k int64) string {
			if !w.HasProcesses {
				return "–"
			}
			return fmt.Sprintf("%.1f", float64(k)/1024)
		}
		cpu := "–"
		if w.HasProcesses {
			cpu = fmt.Sprintf("%.3f", w.CPUPer10k)
		}
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f | %.3f | %+.3f | %+.3f | %+.3f | %.0f | %s | %s | %s |\n",
			w.Target, w.P50Ms, w.P99Ms, w.P999Ms, w.MaxMs, w.AddedP50Ms, w.AddedP99Ms, w.AddedP999Ms, w.MaxQPS,
			rss(w.RSSIdleKiB), rss(w.RSSLoadKiB), cpu)
	}
	for _, w := range r.Rows {
		if w.Note != "" {
			fmt.Fprintf(&b, "\n- %s: %s", w.Target, w.Note)
		}
	}
	if len(r.Targets) > 0 {
		b.WriteString("\n\n| weft-proxy target | measured | |\n| --- | --- | --- |\n")
		for _, t := range r.Targets {
			mark := "missed"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Goal, t.Measured, mark)
		}
	}
	return b.String()
}
