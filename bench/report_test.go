package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseFortio(t *testing.T) {
	f, err := os.Open("testdata/fortio.json") // a real 1s fortio run at 200 qps
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := parseFortio(f)
	if err != nil {
		t.Fatal(err)
	}
	ok, total := r.ok200()
	if ok != 200 || total != 200 {
		t.Errorf("200s = %d of %d, want 200 of 200", ok, total)
	}
	tests := []struct {
		p    float64
		want float64
	}{{50, 0.5784}, {99, 4.0}, {99.9, 7.6221}, {75, -1}}
	for _, tt := range tests {
		if got := r.percentileMs(tt.p); got < tt.want-0.001 || got > tt.want+0.001 {
			t.Errorf("p%v = %.4f ms, want %.4f", tt.p, got, tt.want)
		}
	}
}

func TestEvaluateAndMarkdown(t *testing.T) {
	rep := &Report{Machine: "Test CPU, 2 CPUs", Rows: []Row{
		{Target: "direct", MaxQPS: 20000},
		{Target: "haproxy", MaxQPS: 10000, AddedP99Ms: 0.5, HasProcesses: true},
		{Target: "httputil.ReverseProxy", MaxQPS: 8000, HasProcesses: true},
		{Target: "weft-proxy", MaxQPS: 9000, AddedP99Ms: 0.4, RSSIdleKiB: 9 * 1024, RSSLoadKiB: 25 * 1024, HasProcesses: true},
		{Target: "haproxy pair", MaxQPS: 8000, AddedP99Ms: 1.0, CPUPer10k: 0.8, HasProcesses: true},
		{Target: "weft-proxy pair", MaxQPS: 6000, AddedP99Ms: 0.9, CPUPer10k: 1.2, RSSIdleKiB: 22 * 1024, RSSLoadKiB: 30 * 1024, HasProcesses: true},
	}}
	rep.evaluate()
	got := map[string]bool{}
	for _, tg := range rep.Targets {
		got[tg.Goal] = tg.Met
	}
	want := map[string]bool{
		"max throughput ≥ 1.0× haproxy":                  false, // 0.9×
		"added p99 at fixed rate ≤ haproxy's":            true,
		"max throughput ≥ 1.3× httputil.ReverseProxy":    false, // 1.125×
		"idle RSS ≤ 10 MiB":                              true,
		"RSS at fixed rate ≤ 20 MiB":                     false,
		"pair: max throughput ≥ 1.0× haproxy pair":       false, // 0.75×
		"pair: added p99 at fixed rate ≤ haproxy pair's": true,
		"pair: CPU per request ≤ 1.25× haproxy pair's":   false, // 1.5×
		"pair: idle RSS per proxy ≤ 10 MiB":              false, // 11 MiB
		"pair: RSS per proxy at fixed rate ≤ 20 MiB":     true,  // 15 MiB
	}
	for goal, met := range want {
		if m, ok := got[goal]; !ok || m != met {
			t.Errorf("%s: met=%v (present %v), want %v", goal, m, ok, met)
		}
	}
	md := rep.Markdown()
	for _, s := range []string{"| weft-proxy | ", "| 0.90× | missed |", "| direct | ", "| 0.75× | missed |", "Machine: Test CPU, 2 CPUs.", "| 1.50× (1.200 vs 0.800 s / 10k) | missed |"} {
		if !strings.Contains(md, s) && !strings.Contains(md, strings.TrimPrefix(s, "| ")) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}
