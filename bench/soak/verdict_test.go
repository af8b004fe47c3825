package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestSlope(t *testing.T) {
	tests := []struct {
		name   string
		xs, ys []float64
		want   float64
	}{
		{"flat", []float64{0, 1, 2, 3}, []float64{20, 20, 20, 20}, 0},
		{"growing", []float64{0, 1, 2, 3}, []float64{20, 20.5, 21, 21.5}, 0.5},
		{"shrinking", []float64{2, 4, 6}, []float64{30, 29, 28}, -0.5},
		{"noise around a line", []float64{0, 1, 2, 3}, []float64{1, 3, 3, 5}, 1.2},
		{"one point", []float64{1}, []float64{5}, 0},
		{"same x", []float64{1, 1}, []float64{5, 7}, 0},
	}
	for _, tt := range tests {
		if got := slope(tt.xs, tt.ys); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: slope = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// samples returns one sample every 10 s for minutes, RSS growing by
// growKiBPerMin from 20 MiB, goroutines g.
func samples(minutes int, growKiBPerMin float64, g int64) []Sample {
	var out []Sample
	for i := 0; i <= minutes*6; i++ {
		t := float64(i * 10)
		out = append(out, Sample{T: t, RSSKiB: 20*1024 + int64(growKiBPerMin*t/60), Goroutines: g, GCCount: int64(i * 30)})
	}
	return out
}

func TestJudge(t *testing.T) {
	limits := Limits{WarmupS: 120, MinTrendS: 300, MaxSlopeMiBPerMin: 0.1, GoroutineSlack: 10}
	tests := []struct {
		name          string
		r             ProxyResult
		wantWhy       []string // substrings, one per reason
		wantJudged    bool
		wantSlope     float64
		wantGCs       int64
		wantPeakKiB   int64
		wantPeakGorts int64
		wantEndKiB    int64
	}{
		{
			name:       "flat 10 minutes",
			r:          ProxyResult{Name: "p", Samples: samples(10, 0, 40), GoroutinesBefore: 30, GoroutinesAfter: 31},
			wantJudged: true, wantGCs: 1800, wantPeakKiB: 20 * 1024, wantPeakGorts: 40, wantEndKiB: 20 * 1024,
		},
		{
			name:       "RSS grows 1 MiB a minute",
			r:          ProxyResult{Name: "p", Samples: samples(10, 1024, 40), GoroutinesBefore: 30, GoroutinesAfter: 30},
			wantWhy:    []string{"RSS grows"},
			wantJudged: true, wantSlope: 1, wantGCs: 1800, wantPeakKiB: 30 * 1024, wantPeakGorts: 40, wantEndKiB: 30 * 1024,
		},
		{
			name:       "goroutines leak",
			r:          ProxyResult{Name: "p", Samples: samples(10, 0, 40), GoroutinesBefore: 30, GoroutinesAfter: 641},
			wantWhy:    []string{"641 goroutines after the load, 30 before it (+611, slack 10)"},
			wantJudged: true, wantGCs: 1800, wantPeakKiB: 20 * 1024, wantPeakGorts: 40, wantEndKiB: 20 * 1024,
		},
		{
			name:       "connections leak (no goroutine each)",
			r:          ProxyResult{Name: "p", Samples: samples(10, 0, 40), GoroutinesBefore: 30, GoroutinesAfter: 30, FDsBefore: 20, FDsAfter: 220},
			wantWhy:    []string{"220 open file descriptors after the load, 20 before it (+200, slack 10): a connection leak"},
			wantJudged: true, wantGCs: 1800, wantPeakKiB: 20 * 1024, wantPeakGorts: 40, wantEndKiB: 20 * 1024,
		},
		{
			name:       "a minute: growth not judged, a leak still is",
			r:          ProxyResult{Name: "p", Samples: samples(1, 10240, 40), GoroutinesBefore: 30, GoroutinesAfter: 41},
			wantWhy:    []string{"+11, slack 10"},
			wantJudged: false, wantGCs: 180, wantPeakKiB: 30 * 1024, wantPeakGorts: 40, wantEndKiB: 30 * 1024,
		},
		{
			name: "the reading after the load is not in the trend",
			r: ProxyResult{Name: "p", Samples: append(samples(10, 0, 40), Sample{T: 601, RSSKiB: 25 * 1024, Goroutines: 30, GCCount: 1810, AfterLoad: true}),
				GoroutinesBefore: 30, GoroutinesAfter: 30},
			wantJudged: true, wantGCs: 1810, wantPeakKiB: 25 * 1024, wantPeakGorts: 40, wantEndKiB: 20 * 1024,
		},
		{
			name:    "no samples",
			r:       ProxyResult{Name: "p"},
			wantWhy: []string{"no samples"},
		},
	}
	for _, tt := range tests {
		r := tt.r
		why := r.judge(limits)
		if len(why) != len(tt.wantWhy) {
			t.Errorf("%s: reasons %q, want %d like %q", tt.name, why, len(tt.wantWhy), tt.wantWhy)
			continue
		}
		for i := range why {
			if !strings.Contains(why[i], tt.wantWhy[i]) {
				t.Errorf("%s: reason %q, want it to contain %q", tt.name, why[i], tt.wantWhy[i])
			}
		}
		if len(r.Samples) == 0 {
			continue
		}
		if r.RSSEndKiB != tt.wantEndKiB {
			t.Errorf("%s: RSS end %d KiB, want %d (the last reading under load)", tt.name, r.RSSEndKiB, tt.wantEndKiB)
		}
		if r.SlopeJudged != tt.wantJudged || math.Abs(r.SlopeMiBPerMin-tt.wantSlope) > 0.01 || r.GCs != tt.wantGCs ||
			r.RSSPeakKiB != tt.wantPeakKiB || r.GoroutinesPeak != tt.wantPeakGorts {
			t.Errorf("%s: judged %v slope %.3f GCs %d peak %d KiB %d goroutines, want %v %.3f %d %d %d", tt.name,
				r.SlopeJudged, r.SlopeMiBPerMin, r.GCs, r.RSSPeakKiB, r.GoroutinesPeak,
				tt.wantJudged, tt.wantSlope, tt.wantGCs, tt.wantPeakKiB, tt.wantPeakGorts)
		}
	}
}

func TestGCPauses(t *testing.T) {
	log := strings.Join([]string{
		`time=... level=WARN msg="something"`,
		"gc 1 @0.010s 1%: 0.020+1.5+0.030 ms clock, 0.040+0.1/0.2/0+0.060 ms cpu, 3->3->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P",
		"gc 2 @0.500s 1%: 0.10+2.0+0.05 ms clock, 0.2+0/0/0+0.1 ms cpu, 3->3->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P",
		"gc 3 @1.000s 1%: 1.5+0.3+2.5 ms clock, 3+0/0/0+5 ms cpu, 3->3->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)",
		"gc 4 @1.5s 1%: garbage",
		"scvg: 0 MB released",
	}, "\n")
	tests := []struct {
		first, last int64
		want        []float64
	}{
		{1, 3, []float64{20, 30, 100, 50, 1500, 2500}},
		{2, 2, []float64{100, 50}},
		{4, 9, nil},
	}
	for _, tt := range tests {
		got := gcPauses(log, tt.first, tt.last)
		if len(got) != len(tt.want) {
			t.Errorf("gcPauses(%d..%d) = %v, want %v", tt.first, tt.last, got, tt.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tt.want[i]) > 1e-6 {
				t.Errorf("gcPauses(%d..%d) = %v, want %v", tt.first, tt.last, got, tt.want)
			}
		}
	}
}

func TestParseGoStats(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    goStats
		wantErr bool
	}{
		{
			name: "go collector",
			in: "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n" +
				"go_gc_duration_seconds{quantile=\"0.5\"} 3.1e-05\ngo_gc_duration_seconds_sum 0.01\ngo_gc_duration_seconds_count 1234\n" +
				"request_total{direction=\"inbound\"} 7\nprocess_open_fds 17\n",
			want: goStats{Goroutines: 42, GCCount: 1234, OpenFDs: 17},
		},
		{name: "missing", in: "request_total 1\n", wantErr: true},
		{name: "bad value", in: "go_goroutines many\ngo_gc_duration_seconds_count 1\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseGoStats(strings.NewReader(tt.in))
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("%s: got %+v, %v; want %+v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS(strings.NewReader("Name:\tweft-proxy\nVmPeak:\t 1000 kB\nVmRSS:\t   21504 kB\nThreads:\t5\n"))
	if err != nil || got != 21504 {
		t.Errorf("parseVmRSS = %d, %v; want 21504", got, err)
	}
	if _, err := parseVmRSS(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("parseVmRSS without VmRSS: no error")
	}
}

func TestReportJudge(t *testing.T) {
	flat := func() []ProxyResult {
		return []ProxyResult{{Name: "out", Samples: samples(10, 0, 40), GoroutinesBefore: 30, GoroutinesAfter: 30}}
	}
	tests := []struct {
		name     string
		r        Report
		res      []ProxyResult
		wantFlat bool
	}{
		{"clean", Report{Requests: 600000, RetCodes: map[string]int64{"200": 600000}}, flat(), true},
		{"one failure", Report{Requests: 600000, Failures: 1, RetCodes: map[string]int64{"200": 599999, "-1": 1}}, flat(), false},
		{"a warm-up failure", Report{Requests: 600000, WarmupFailures: 2}, flat(), false},
		{"no requests", Report{}, flat(), false},
		{"leaking proxy", Report{Requests: 600000}, []ProxyResult{{Name: "out", Samples: samples(10, 0, 40), GoroutinesBefore: 30, GoroutinesAfter: 90}}, false},
	}
	for _, tt := range tests {
		r := tt.r
		r.Limits = Limits{WarmupS: 120, MinTrendS: 300, MaxSlopeMiBPerMin: 0.1, GoroutineSlack: 10}
		r.judge(tt.res)
		if r.Flat != tt.wantFlat {
			t.Errorf("%s: flat %v (%q), want %v", tt.name, r.Flat, r.Reasons, tt.wantFlat)
		}
		if md := r.Markdown(); tt.wantFlat != strings.Contains(md, "Verdict: **flat**") {
			t.Errorf("%s: the Markdown's verdict disagrees with flat=%v:\n%s", tt.name, tt.wantFlat, md)
		}
	}
}

// TestFortioArgvH2: -h2 goes before the URL, fortio's last argument.
func TestFortioArgvH2(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		argv := fortioArgv("fortio", "out.json", "http://127.0.0.1:1/echo", 1000, 16, time.Minute, h2)
		n := len(argv)
		if argv[n-1] != "http://127.0.0.1:1/echo" {
			t.Errorf("h2=%v: last argument %q, want the URL", h2, argv[n-1])
		}
		if got := argv[n-2] == "-h2"; got != h2 {
			t.Errorf("h2=%v: argv %q", h2, argv)
		}
	}
}
