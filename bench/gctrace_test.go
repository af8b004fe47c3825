package main

import (
	"strings"
	"testing"
)

func TestGCPauses(t *testing.T) {
	log := `time=... level=WARN msg="identity is disabled"
gc 1 @0.004s 1%: 0.011+0.52+0.003 ms clock, 0.011+0.10/0.2/0+0.003 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 1 P
gc 2 @1.500s 0%: 0.020+1.1+0.045 ms clock, 0.020+0/0.3/0+0.045 ms cpu, 4->4->1 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 1 P
gc 3 @2.0s 0%: garbage
`
	got := gcPauses(strings.NewReader(log))
	want := []float64{11, 3, 20, 45}
	if len(got) != len(want) {
		t.Fatalf("gcPauses = %v, want %v", got, want)
	}
	for i := range want {
		if d := got[i] - want[i]; d > 1e-9 || d < -1e-9 {
			t.Errorf("pause %d = %v µs, want %v", i, got[i], want[i])
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	tests := []struct {
		p    float64
		want float64
	}{{0, 1}, {50, 3}, {99.9, 5}, {100, 5}, {20, 1}, {21, 2}}
	for _, tt := range tests {
		if got := percentile(xs, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}
