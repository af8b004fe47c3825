package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/weftmesh/weft/bench/harness"
)

// Sample is one reading of one proxy.
type Sample struct {
	T          float64 `json:"t_s"` // seconds since the load started
	RSSKiB     int64   `json:"rss_kib"`
	Goroutines int64   `json:"goroutines"`
	GCCount    int64   `json:"gc_count"`
	// AfterLoad marks the reading taken right after the load stopped: it
	// counts for the peak and the GC count, not for the trend.
	AfterLoad bool `json:"after_load,omitempty"`
}

// Limits are what "flat" means.
type Limits struct {
	// Warmup is excluded from the RSS trend (pools filling, the heap
	// growing to its steady size).
	WarmupS float64 `json:"warmup_s"`
	// MinTrendS: the RSS slope is judged only when the samples after the
	// warm-up span at least this long (a 60 s run checks failures and
	// goroutines only).
	MinTrendS float64 `json:"min_trend_s"`
	// MaxSlopeMiBPerMin bounds the least-squares RSS slope.
	MaxSlopeMiBPerMin float64 `json:"max_slope_mib_per_min"`
	// GoroutineSlack: after the load, goroutines must come back to within
	// this many of their count after the warm-up load; so must open file
	// descriptors (a leaked upstream connection of the proxy's HTTP/1
	// client has no goroutine of its own).
	GoroutineSlack int64 `json:"goroutine_slack"`
}

// ProxyResult is one proxy's readings and judgement.
type ProxyResult struct {
	Name    string   `json:"name"`
	Samples []Sample `json:"samples"`
	// Goroutines idle before any load, idle after the warm-up load (the
	// reference: pooled connections open), and idle after the soak.
	GoroutinesIdle   int64 `json:"goroutines_idle"`
	GoroutinesBefore int64 `json:"goroutines_before"`
	GoroutinesAfter  int64 `json:"goroutines_after"`
	GoroutinesPeak   int64 `json:"goroutines_peak"`
	// Open file descriptors after the warm-up load and after the soak.
	FDsBefore   int64 `json:"fds_before"`
	FDsAfter    int64 `json:"fds_after"`
	RSSStartKiB int64 `json:"rss_start_kib"`
	RSSEndKiB   int64 `json:"rss_end_kib"` // the last reading under load
	RSSPeakKiB  int64 `json:"rss_peak_kib"`
	// SlopeMiBPerMin is the least-squares RSS slope after the warm-up;
	// SlopeJudged says whether the run was long enough to judge it.
	SlopeMiBPerMin float64 `json:"slope_mib_per_min"`
	SlopeJudged    bool    `json:"slope_judged"`
	GCs            int64   `json:"gcs"` // collections during the load
	// GC pauses (each stop-the-world pause, two per collection, from
	// GODEBUG=gctrace=1) of the collections during the load.
	GCPauseP50Us  float64 `json:"gc_pause_p50_us"`
	GCPauseP999Us float64 `json:"gc_pause_p999_us"`
	GCPauseMaxUs  float64 `json:"gc_pause_max_us"`
}

// judge fills in the summary numbers of r and returns why it is not flat
// (nil: flat).
func (r *ProxyResult) judge(l Limits) []string {
	var why []string
	if len(r.Samples) == 0 {
		return []string{r.Name + ": no samples"}
	}
	r.RSSStartKiB = r.Samples[0].RSSKiB
	var xs, ys []float64
	for _, s := range r.Samples {
		r.RSSPeakKiB = max(r.RSSPeakKiB, s.RSSKiB)
		r.GoroutinesPeak = max(r.GoroutinesPeak, s.Goroutines)
		if s.AfterLoad {
			continue
		}
		r.RSSEndKiB = s.RSSKiB
		if s.T >= l.WarmupS {
			xs = append(xs, s.T/60)
			ys = append(ys, float64(s.RSSKiB)/1024)
		}
	}
	r.GCs = r.Samples[len(r.Samples)-1].GCCount - r.Samples[0].GCCount
	r.SlopeMiBPerMin = slope(xs, ys)
	r.SlopeJudged = len(xs) >= 3 && (xs[len(xs)-1]-xs[0])*60 >= l.MinTrendS
	if r.SlopeJudged && r.SlopeMiBPerMin >= l.MaxSlopeMiBPerMin {
		why = append(why, fmt.Sprintf("%s: RSS grows %.3f MiB/min after the warm-up (limit %.3f)", r.Name, r.SlopeMiBPerMin, l.MaxSlopeMiBPerMin))
	}
	if d := r.GoroutinesAfter - r.GoroutinesBefore; d > l.GoroutineSlack {
		why = append(why, fmt.Sprintf("%s: %d goroutines after the load, %d before it (+%d, slack %d): a goroutine leak",
			r.Name, r.GoroutinesAfter, r.GoroutinesBefore, d, l.GoroutineSlack))
	}
	if d := r.FDsAfter - r.FDsBefore; d > l.GoroutineSlack {
		why = append(why, fmt.Sprintf("%s: %d open file descriptors after the load, %d before it (+%d, slack %d): a connection leak",
			r.Name, r.FDsAfter, r.FDsBefore, d, l.GoroutineSlack))
	}
	return why
}

// slope is the least-squares slope of ys over xs (0 with fewer than two
// distinct xs).
func slope(xs, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 {
		return 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// gcPauses is every stop-the-world pause (µs, two per collection) of
// collections first to last in a GODEBUG=gctrace=1 log: the ones that
// happened during the load.
func gcPauses(log string, first, last int64) []float64 {
	gcs := slices.DeleteFunc(harness.ParseGCTrace(strings.NewReader(log)), func(g harness.GC) bool {
		return g.Num < first || g.Num > last
	})
	return harness.Pauses(gcs)
}
