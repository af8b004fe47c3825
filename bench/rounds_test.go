package main

import (
	"strings"
	"testing"
)

func TestRoundsMedians(t *testing.T) {
	round := func(hCPU, wCPU, wMax float64, pauses int) *Report {
		r := &Report{Rows: []Row{
			{Target: "direct (netns)", MaxQPS: 40000},
			{Target: "haproxy pair (netns)", MaxQPS: 20000, CPUPer10k: hCPU, RSSIdleKiB: 28 << 10, HasProcesses: true, Note: "haproxy"},
			{Target: "weft-proxy pair (netns)", MaxQPS: wMax, CPUPer10k: wCPU, RSSIdleKiB: 18 << 10, HasProcesses: true,
				GCMeasured: true, GCPauses: pauses, GCPauseP999Us: 50, FixedQPS: 1000},
		}}
		r.evaluate()
		return r
	}
	// CPU ratios 1.2, 1.5, 1.1 (met, missed, met); max rps 0.8, 0.9, 1.1×.
	rounds := []*Report{round(0.5, 0.6, 16000, 20), round(0.4, 0.6, 18000, 30), round(0.6, 0.66, 22000, 25)}
	rep := &Report{Rows: medianRows(rounds)}
	rep.evaluate()
	rep.addRounds(rounds)

	w := rep.row("weft-proxy pair (netns)")
	if w == nil {
		t.Fatal("no weft-proxy row")
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"max rps", w.MaxQPS, 18000.0},
		{"cpu", w.CPUPer10k, 0.6},
		{"gc pauses (int)", w.GCPauses, 25},
		{"rss (int64)", w.RSSIdleKiB, int64(18 << 10)},
		{"kept as is", w.HasProcesses, true},
		{"haproxy cpu", rep.row("haproxy pair (netns)").CPUPer10k, 0.5},
		{"note", rep.row("haproxy pair (netns)").Note, "haproxy"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	var cpu *Target
	for i := range rep.Targets {
		if strings.HasPrefix(rep.Targets[i].Goal, "netns pair: CPU per request") {
			cpu = &rep.Targets[i]
		}
	}
	if cpu == nil {
		t.Fatal("no CPU goal")
	}
	// Judged on the medians (0.6 vs 0.5: 1.2×), with each round's measure.
	if !cpu.Met || cpu.MetRounds != 2 || len(cpu.PerRound) != 3 || !strings.HasPrefix(cpu.PerRound[1], "1.50×") {
		t.Errorf("CPU goal %+v, want met on the medians, met in 2 of 3 rounds, the second 1.50×", *cpu)
	}
	rep.Rounds = 3
	md := rep.Markdown()
	for _, s := range []string{"median of 3 rounds", "| met | 2 of 3 | 1.20× (0.600 vs 0.500 s / 10k); 1.50× (0.600 vs 0.400 s / 10k); 1.10× (0.660 vs 0.600 s / 10k) |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
