package main

import (
	"fmt"
	"strings"
)

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
	Kind         string  `json:"kind,omitempty"` // http1 (fortio), h2 (h2load), bulk, connect

	// GC pauses of the weft-proxies at the fixed rate (GODEBUG=gctrace=1).
	GCMeasured    bool    `json:"gc_measured,omitempty"`
	GCPauses      int     `json:"gc_pauses,omitempty"`
	GCPauseP999Us float64 `json:"gc_pause_p999_us,omitempty"`
	GCPauseMaxUs  float64 `json:"gc_pause_max_us,omitempty"`

	// Opaque TCP rows: bytes moved and throughput; connect rows: new
	// connections, per second and per CPU-second of the proxies.
	BulkBytes           int64   `json:"bulk_bytes,omitempty"`
	BulkMiBps           float64 `json:"bulk_mib_per_s,omitempty"`
	Conns               int64   `json:"conns,omitempty"`
	ConnsPerSec         float64 `json:"conns_per_s,omitempty"`
	HandshakesPerCPUSec float64 `json:"handshakes_per_cpu_s,omitempty"`
	CPUSeconds          float64 `json:"cpu_seconds,omitempty"`
	// Bulk rows: the proxies' CPU split into user and system (kernel)
	// seconds, from /proc/PID/stat's utime and stime.
	CPUUserSeconds float64 `json:"cpu_user_seconds,omitempty"`
	CPUSysSeconds  float64 `json:"cpu_sys_seconds,omitempty"`
}

// summary is the row in one log line.
func (w *Row) summary() string {
	switch w.Kind {
	case "bulk":
		return fmt.Sprintf("%.0f MiB/s, %.2f CPU s (user %.2f, sys %.2f)", w.BulkMiBps, w.CPUSeconds, w.CPUUserSeconds, w.CPUSysSeconds)
	case "connect":
		return fmt.Sprintf("%.0f conns/s, %.0f per CPU-second", w.ConnsPerSec, w.HandshakesPerCPUSec)
	}
	return fmt.Sprintf("p50 %.3fms p99 %.3fms max %.0f rps, %.3f CPU s / 10k", w.P50Ms, w.P99Ms, w.MaxQPS, w.CPUPer10k)
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
	Layout   string   `json:"layout,omitempty"` // how the network-namespace rows ran, or why not
	Targets  []Target `json:"targets"`
	// Rounds is -rounds when above 1: the rows are medians (rounds.go).
	Rounds int `json:"rounds,omitempty"`
}

// Target is a stated goal and whether this run met it.
type Target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	// With -rounds: each round's measure, and how many met the goal.
	PerRound  []string `json:"per_round,omitempty"`
	MetRounds int      `json:"met_rounds,omitempty"`
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
		r.evaluatePair()
		return
	}
	add := r.add
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

// evaluatePair compares the weft-proxy pairs with the haproxy pairs in the
// same layout (issue 17's goals; RSS is per proxy, the pair's sum halved),
// and the opaque, handshake and GC rows with theirs.
func (r *Report) evaluatePair() {
	r.evaluateTrio("pair", "weft-proxy pair", "haproxy pair", true)
	r.evaluateTrio("netns pair", "weft-proxy pair (netns)", "haproxy pair (netns)", true)
	r.evaluateTrio("netns mTLS pair", "weft-proxy mTLS pair (netns)", "haproxy TLS pair (netns)", false)
	if w := r.row("weft-proxy mTLS pair (netns)"); w != nil && w.Requests > 0 {
		// Both proxies' CPU per request, halved, at 1,000 requests a second.
		v := w.CPUPer10k / 10000 / 2 * 1000
		r.add("netns mTLS pair: ≤ 0.10 vCPU per 1,000 rps per proxy", fmt.Sprintf("%.3f vCPU", v), v <= 0.10)
	}
	r.evaluateTrio("netns h2 mTLS pair", "weft-proxy h2 mTLS pair (netns)", "haproxy h2 TLS pair (netns)", false)
	for _, name := range []string{"weft-proxy opaque pair (netns)", "weft-proxy opaque mTLS pair (netns)"} {
		w, d := r.row(name), r.row("opaque direct (netns)")
		if w == nil || d == nil || w.BulkMiBps <= 0 || d.BulkMiBps <= 0 {
			continue
		}
		ratio := w.BulkMiBps / d.BulkMiBps
		r.add(name+": opaque TCP throughput ≥ 0.9× direct", fmt.Sprintf("%.2f× (%.0f vs %.0f MiB/s)", ratio, w.BulkMiBps, d.BulkMiBps), ratio >= 0.9)
	}
	if w := r.row("weft-proxy mTLS handshakes (netns)"); w != nil && w.Conns > 0 {
		r.add("mTLS handshakes ≥ 2,500/s per core (new connections ÷ both proxies' CPU seconds)",
			fmt.Sprintf("%.0f per CPU-second (%.0f conns/s, %.1f CPU s)", w.HandshakesPerCPUSec, w.ConnsPerSec, w.CPUSeconds), w.HandshakesPerCPUSec >= 2500)
	}
	for _, name := range []string{"weft-proxy pair (netns)", "weft-proxy mTLS pair (netns)"} {
		if w := r.row(name); w != nil && w.GCMeasured && w.FixedQPS > 0 {
			r.add(fmt.Sprintf("%s: GC pause p99.9 ≤ 100 µs at %.0f rps", name, w.FixedQPS),
				fmt.Sprintf("%.0f µs (%d pauses, max %.0f µs)", w.GCPauseP999Us, w.GCPauses, w.GCPauseMaxUs), w.GCPauseP999Us <= 100)
		}
	}
}

func (t Target) mark() string {
	if t.Met {
		return "met"
	}
	return "missed"
}

func (r *Report) add(goal, measured string, met bool) {
	r.Targets = append(r.Targets, Target{Goal: goal, Measured: measured, Met: met})
}

// evaluateTrio: max rps ≥ 1.0×, added p99 ≤, CPU per request ≤ 1.25× of
// the haproxy row; with rss, also RSS per proxy.
func (r *Report) evaluateTrio(label, weft, haproxy string, rss bool) {
	w, h := r.row(weft), r.row(haproxy)
	if w == nil || h == nil || h.MaxQPS <= 0 || w.MaxQPS <= 0 {
		return
	}
	ratio := w.MaxQPS / h.MaxQPS
	r.add(label+": max throughput ≥ 1.0× "+haproxy, fmt.Sprintf("%.2f× (%.0f vs %.0f rps)", ratio, w.MaxQPS, h.MaxQPS), ratio >= 1.0)
	r.add(label+": added p99 at fixed rate ≤ "+haproxy+"'s", fmt.Sprintf("%.3f ms vs %.3f ms", w.AddedP99Ms, h.AddedP99Ms), w.AddedP99Ms <= h.AddedP99Ms)
	if h.CPUPer10k > 0 {
		cpu := w.CPUPer10k / h.CPUPer10k
		r.add(label+": CPU per request ≤ 1.25× "+haproxy+"'s", fmt.Sprintf("%.2f× (%.3f vs %.3f s / 10k)", cpu, w.CPUPer10k, h.CPUPer10k), cpu <= 1.25)
	}
	if rss {
		r.add(label+": idle RSS per proxy ≤ 10 MiB", fmt.Sprintf("%.1f MiB", float64(w.RSSIdleKiB)/2048), w.RSSIdleKiB <= 2*10*1024)
		r.add(label+": RSS per proxy at fixed rate ≤ 20 MiB", fmt.Sprintf("%.1f MiB", float64(w.RSSLoadKiB)/2048), w.RSSLoadKiB <= 2*20*1024)
	}
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
	if r.Layout != "" {
		fmt.Fprintf(&b, "Network-namespace rows: %s\n\n", r.Layout)
	}
	fmt.Fprintf(&b, "h2 rows: h2load (h2c prior knowledge), 10 connections at the fixed rate, 16 connections × 10 streams at max rate.\n\n")
	b.WriteString("| target | p50 ms | p99 ms | p99.9 ms | max ms | added p50 | added p99 | added p99.9 | max rps | RSS idle MiB | RSS load MiB | CPU s / 10k req |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, w := range r.Rows {
		if w.Kind == "bulk" || w.Kind == "connect" {
			continue
		}
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
	var other, gc []Row
	for _, w := range r.Rows {
		if w.Kind == "bulk" || w.Kind == "connect" {
			other = append(other, w)
		}
		if w.GCMeasured {
			gc = append(gc, w)
		}
	}
	if len(other) > 0 {
		b.WriteString("\nOpaque TCP (tcpbulk: bulk transfer over 4 connections; new connections, one echo each, 8 at a time):\n\n")
		b.WriteString("| target | MiB moved | MiB/s | connections | conns/s | per proxies' CPU-second | proxies' CPU s | user/sys s per GiB | peak RSS MiB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, w := range other {
			mib, mibps, conns, cps, per := "–", "–", "–", "–", "–"
			if w.Kind == "bulk" {
				mib, mibps = fmt.Sprintf("%.0f", float64(w.BulkBytes)/(1<<20)), fmt.Sprintf("%.0f", w.BulkMiBps)
			} else {
				conns, cps, per = fmt.Sprint(w.Conns), fmt.Sprintf("%.0f", w.ConnsPerSec), fmt.Sprintf("%.0f", w.HandshakesPerCPUSec)
			}
			cpu, split, rss := "–", "–", "–"
			if w.HasProcesses {
				cpu, rss = fmt.Sprintf("%.2f", w.CPUSeconds), fmt.Sprintf("%.1f", float64(w.RSSLoadKiB)/1024)
				if gib := float64(w.BulkBytes) / (1 << 30); gib > 0 {
					split = fmt.Sprintf("%.2f / %.2f", w.CPUUserSeconds/gib, w.CPUSysSeconds/gib)
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w.Target, mib, mibps, conns, cps, per, cpu, split, rss)
		}
	}
	if len(gc) > 0 {
		b.WriteString("\nGC stop-the-world pauses of the weft-proxies during the fixed-rate phase (GODEBUG=gctrace=1, both proxies):\n\n")
		b.WriteString("| target | pauses | p99.9 µs | max µs |\n| --- | ---: | ---: | ---: |\n")
		for _, w := range gc {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f |\n", w.Target, w.GCPauses, w.GCPauseP999Us, w.GCPauseMaxUs)
		}
	}
	for _, w := range r.Rows {
		if w.Note != "" {
			fmt.Fprintf(&b, "\n- %s: %s", w.Target, w.Note)
		}
	}
	if len(r.Targets) > 0 && r.Rounds > 1 {
		fmt.Fprintf(&b, "\n\nEvery number above is the median of %d rounds; the goals are judged on those medians.\n\n", r.Rounds)
		b.WriteString("| weft-proxy target | measured (medians) | | met in | each round |\n| --- | --- | --- | --- | --- |\n")
		for _, t := range r.Targets {
			in, each := t.roundsCells()
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.Goal, t.Measured, t.mark(), in, each)
		}
	} else if len(r.Targets) > 0 {
		b.WriteString("\n\n| weft-proxy target | measured | |\n| --- | --- | --- |\n")
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Goal, t.Measured, t.mark())
		}
	}
	return b.String()
}
