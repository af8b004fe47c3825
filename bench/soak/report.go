package main

import (
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/harness"
)

// runFortio loads url at qps over conns connections for d and parses
// fortio's JSON.
func runFortio(fortio, jsonPath, url string, qps, conns int, d time.Duration, h2 bool) (*harness.FortioResult, error) {
	return harness.RunFortio(fortioArgv(fortio, jsonPath, url, qps, conns, d, h2), jsonPath)
}

// fortioArgv is fortio's command line, with -h2 (h2c, prior knowledge)
// when h2.
func fortioArgv(fortio, jsonPath, url string, qps, conns int, d time.Duration, h2 bool) []string {
	argv := harness.FortioArgs(fortio, jsonPath, url, qps, conns, d)
	if h2 {
		// Before the URL, fortio's last argument.
		argv = append(argv[:len(argv)-1:len(argv)-1], "-h2", url)
	}
	return argv
}

// Report is the soak's result.
type Report struct {
	Date      string           `json:"date"`
	Machine   string           `json:"machine"`
	Duration  string           `json:"duration"`
	Interval  string           `json:"interval"`
	QPS       int              `json:"qps"`
	Conns     int              `json:"conns"`
	Path      string           `json:"path"`
	HTTP2     bool             `json:"http2"`     // fortio sent h2c: HTTP/2 on every hop
	Proxy     string           `json:"proxy"`     // which weft-proxy: this tree's commit, or -proxy-bin
	MTLSPeer  string           `json:"mtls_peer"` // the client identity the inbound proxy saw
	Limits    Limits           `json:"limits"`
	ActualQPS float64          `json:"actual_qps"`
	Requests  int64            `json:"requests"`
	Failures  int64            `json:"failures"`
	RetCodes  map[string]int64 `json:"ret_codes"`
	P50Ms     float64          `json:"p50_ms"`
	P99Ms     float64          `json:"p99_ms"`
	P999Ms    float64          `json:"p999_ms"`
	Proxies   []ProxyResult    `json:"proxies"`
	Flat      bool             `json:"flat"`
	Reasons   []string         `json:"reasons,omitempty"`
	// The warm-up's failures count too.
	WarmupRequests int64 `json:"warmup_requests"`
	WarmupFailures int64 `json:"warmup_failures"`
}

func newReport(o options, peer string) *Report {
	return &Report{Date: time.Now().UTC().Format(time.RFC3339), Machine: harness.Machine("at the end"), Duration: o.duration.String(),
		Interval: o.interval.String(), QPS: o.qps, Conns: o.conns, Path: o.path, HTTP2: o.h2, MTLSPeer: peer, Limits: o.limits,
		Proxy: proxyDescription(o.proxyBin)}
}

// proxyDescription names the weft-proxy under test: -proxy-bin's path, or
// the tree's commit (with -dirty when it has uncommitted changes).
func proxyDescription(bin string) string {
	if bin != "" {
		return bin
	}
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "built from this tree"
	}
	return "built from this tree at " + strings.TrimSpace(string(out))
}

// judge sets the verdict from the load's failures and each proxy's trend.
func (r *Report) judge(res []ProxyResult) {
	r.Reasons = nil
	if r.Failures > 0 || r.WarmupFailures > 0 {
		r.Reasons = append(r.Reasons, fmt.Sprintf("%d of %d requests failed (and %d of %d in the warm-up): %v",
			r.Failures, r.Requests, r.WarmupFailures, r.WarmupRequests, r.RetCodes))
	}
	if r.Requests == 0 {
		r.Reasons = append(r.Reasons, "no requests")
	}
	for i := range res {
		r.Reasons = append(r.Reasons, res[i].judge(r.Limits)...)
	}
	r.Proxies = res
	r.Flat = len(r.Reasons) == 0
}

// Markdown renders the verdict, the summary per proxy and every sample.
func (r *Report) Markdown() string {
	var b strings.Builder
	verdict := "**flat**"
	if !r.Flat {
		verdict = "**NOT flat**: " + strings.Join(r.Reasons, "; ")
	}
	fmt.Fprintf(&b, "# Soak: a meshed pair with mTLS under steady load\n\n%s, %s\n\n", r.Date, r.Machine)
	fmt.Fprintf(&b, "fortio → outbound weft-proxy → mTLS (client identity `%s`, seen by the inbound proxy) → inbound weft-proxy → fortio server; "+
		"`%s` at %d rps over %d connections for %s, samples every %s. weft-proxy: %s.\n\n", r.MTLSPeer, r.Path, r.QPS, r.Conns, r.Duration, r.Interval, r.Proxy)
	if r.HTTP2 {
		fmt.Fprintf(&b, "HTTP/2 on every hop: fortio sends h2c (`-h2`), the proxies carry it as HTTP/2 over mTLS and as h2c to the server.\n\n")
	}
	fmt.Fprintf(&b, "Verdict: %s\n\n", verdict)
	fmt.Fprintf(&b, "Flat means: zero failed requests; RSS least-squares slope after the first %.0f s below %.2f MiB/min "+
		"(judged when the samples after it span ≥ %.0f s); goroutines within %d of their count after a warm-up load, once the load stops.\n\n",
		r.Limits.WarmupS, r.Limits.MaxSlopeMiBPerMin, r.Limits.MinTrendS, r.Limits.GoroutineSlack)
	fmt.Fprintf(&b, "Requests: %d (%.1f rps), failed: %d; warm-up: %d, failed: %d. Latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms.\n\n",
		r.Requests, r.ActualQPS, r.Failures, r.WarmupRequests, r.WarmupFailures, r.P50Ms, r.P99Ms, r.P999Ms)
	b.WriteString("| proxy | RSS start | RSS end | RSS peak | slope MiB/min | goroutines idle / before / peak / after | open fds before / after | GCs | GC pause p50 / p99.9 / max |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range r.Proxies {
		judged := ""
		if !p.SlopeJudged {
			judged = " (not judged: run too short)"
		}
		fmt.Fprintf(&b, "| %s | %.1f MiB | %.1f MiB | %.1f MiB | %+.3f%s | %d / %d / %d / %d | %d / %d | %d | %.0f / %.0f / %.0f µs |\n",
			p.Name, mib(p.RSSStartKiB), mib(p.RSSEndKiB), mib(p.RSSPeakKiB), p.SlopeMiBPerMin, judged,
			p.GoroutinesIdle, p.GoroutinesBefore, p.GoroutinesPeak, p.GoroutinesAfter, p.FDsBefore, p.FDsAfter, p.GCs,
			p.GCPauseP50Us, p.GCPauseP999Us, p.GCPauseMaxUs)
	}
	b.WriteString("\nGC pauses: each stop-the-world pause (two per collection: sweep and mark termination) during the load, from `GODEBUG=gctrace=1`.\n\n## Samples\n\n")
	b.WriteString("| t (s) |")
	for _, p := range r.Proxies {
		fmt.Fprintf(&b, " %s RSS (MiB) | goroutines | GCs |", p.Name)
	}
	b.WriteString("\n| ---: |")
	for range r.Proxies {
		b.WriteString(" ---: | ---: | ---: |")
	}
	b.WriteString("\n")
	if len(r.Proxies) > 0 {
		for i := range r.Proxies[0].Samples {
			s0 := r.Proxies[0].Samples[i]
			after := ""
			if s0.AfterLoad {
				after = " (load stopped)"
			}
			fmt.Fprintf(&b, "| %.0f%s |", s0.T, after)
			for _, p := range r.Proxies {
				if i < len(p.Samples) {
					s := p.Samples[i]
					fmt.Fprintf(&b, " %.2f | %d | %d |", mib(s.RSSKiB), s.Goroutines, s.GCCount)
				}
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
