package main

import (
	"os"
	"strings"
	"testing"
)

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
	for _, s := range []string{"| weft-proxy | ", "| 0.90× | missed |", "| direct | ", "| 0.75× (6000 vs 8000 rps) | missed |", "Machine: Test CPU, 2 CPUs.", "| 1.50× (1.200 vs 0.800 s / 10k) | missed |"} {
		if !strings.Contains(md, s) && !strings.Contains(md, strings.TrimPrefix(s, "| ")) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestEvaluateNetnsRows(t *testing.T) {
	rep := &Report{Rows: []Row{
		{Target: "haproxy TLS pair (netns)", MaxQPS: 8000, AddedP99Ms: 1.0, CPUPer10k: 1.0, HasProcesses: true},
		{Target: "weft-proxy mTLS pair (netns)", MaxQPS: 8800, AddedP99Ms: 1.2, CPUPer10k: 1.2, Requests: 1000, FixedQPS: 1000,
			GCMeasured: true, GCPauses: 40, GCPauseP999Us: 120, GCPauseMaxUs: 120, HasProcesses: true},
		{Target: "haproxy h2 TLS pair (netns)", Kind: "h2", MaxQPS: 5000, AddedP99Ms: 2, CPUPer10k: 1, HasProcesses: true},
		{Target: "weft-proxy h2 mTLS pair (netns)", Kind: "h2", MaxQPS: 4000, AddedP99Ms: 1, CPUPer10k: 2, HasProcesses: true},
		{Target: "opaque direct (netns)", Kind: "bulk", BulkMiBps: 1000, BulkBytes: 1 << 30},
		{Target: "weft-proxy opaque mTLS pair (netns)", Kind: "bulk", BulkMiBps: 950, BulkBytes: 1 << 30, CPUSeconds: 2, HasProcesses: true},
		{Target: "weft-proxy opaque pair (netns)", Kind: "bulk", BulkMiBps: 800, BulkBytes: 1 << 30, CPUSeconds: 1, HasProcesses: true},
		{Target: "weft-proxy mTLS handshakes (netns)", Kind: "connect", Conns: 6000, ConnsPerSec: 3000, HandshakesPerCPUSec: 2000, CPUSeconds: 3, HasProcesses: true},
	}}
	rep.evaluate() // no single-hop rows: only the pair goals
	got := map[string]Target{}
	for _, tg := range rep.Targets {
		got[tg.Goal] = tg
	}
	tests := []struct {
		goal     string
		measured string
		met      bool
	}{
		{"netns mTLS pair: max throughput ≥ 1.0× haproxy TLS pair (netns)", "1.10× (8800 vs 8000 rps)", true},
		{"netns mTLS pair: added p99 at fixed rate ≤ haproxy TLS pair (netns)'s", "1.200 ms vs 1.000 ms", false},
		{"netns mTLS pair: CPU per request ≤ 1.25× haproxy TLS pair (netns)'s", "1.20× (1.200 vs 1.000 s / 10k)", true},
		// 1.2 s per 10k requests for two proxies: 0.06 ms each per request, 0.06 vCPU at 1,000 rps.
		{"netns mTLS pair: ≤ 0.10 vCPU per 1,000 rps per proxy", "0.060 vCPU", true},
		{"netns h2 mTLS pair: max throughput ≥ 1.0× haproxy h2 TLS pair (netns)", "0.80× (4000 vs 5000 rps)", false},
		{"netns h2 mTLS pair: added p99 at fixed rate ≤ haproxy h2 TLS pair (netns)'s", "1.000 ms vs 2.000 ms", true},
		{"netns h2 mTLS pair: CPU per request ≤ 1.25× haproxy h2 TLS pair (netns)'s", "2.00× (2.000 vs 1.000 s / 10k)", false},
		{"weft-proxy opaque mTLS pair (netns): opaque TCP throughput ≥ 0.9× direct", "0.95× (950 vs 1000 MiB/s)", true},
		{"weft-proxy opaque pair (netns): opaque TCP throughput ≥ 0.9× direct", "0.80× (800 vs 1000 MiB/s)", false},
		{"mTLS handshakes ≥ 2,500/s per core (new connections ÷ both proxies' CPU seconds)", "2000 per CPU-second (3000 conns/s, 3.0 CPU s)", false},
		{"weft-proxy mTLS pair (netns): GC pause p99.9 ≤ 100 µs at 1000 rps", "120 µs (40 pauses, max 120 µs)", false},
	}
	for _, tt := range tests {
		g, ok := got[tt.goal]
		if !ok {
			t.Errorf("no goal %q", tt.goal)
			continue
		}
		if g.Measured != tt.measured || g.Met != tt.met {
			t.Errorf("%s: got %q met=%v, want %q met=%v", tt.goal, g.Measured, g.Met, tt.measured, tt.met)
		}
	}
	if _, ok := got["pair: max throughput ≥ 1.0× haproxy pair"]; ok {
		t.Error("a loopback pair goal without loopback pair rows")
	}
	md := rep.Markdown()
	for _, s := range []string{"| weft-proxy opaque mTLS pair (netns) | 1024 | 950 | – | – | – | 2.00 |",
		"| weft-proxy mTLS handshakes (netns) | – | – | 6000 | 3000 | 2000 | 3.00 |",
		"| weft-proxy mTLS pair (netns) | 40 | 120 | 120 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	if strings.Contains(md, "| opaque direct (netns) | 0.000 |") {
		t.Errorf("a bulk row in the HTTP table:\n%s", md)
	}
}

func TestParseH2load(t *testing.T) {
	out := `finished in 2.00s, 1004.50 req/s, 1.01MB/s
requests: 2009 total, 2009 started, 2009 done, 2000 succeeded, 9 failed, 0 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 9 5xx
`
	r, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 1004.5 || r.succeeded != 2000 || r.failed != 9 || r.non2xx != 9 {
		t.Errorf("parseH2load = %+v, want 1004.5 req/s, 2000 succeeded, 9 failed, 9 not 2xx", *r)
	}
	if _, err := parseH2load("connect: Connection refused"); err == nil {
		t.Error("parseH2load of output without a summary: no error")
	}
}

func TestH2LogLatencies(t *testing.T) {
	path := t.TempDir() + "/h2.log"
	if err := os.WriteFile(path, []byte("1700000000000000\t200\t1500\n1700000000000100\t200\t2500\n1700000000000200\t-1\t10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lat, non200, err := h2LogLatencies(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 2 || lat[0] != 1.5 || lat[1] != 2.5 || non200 != 1 {
		t.Errorf("h2LogLatencies = %v, %d not 200; want [1.5 2.5], 1", lat, non200)
	}
}
