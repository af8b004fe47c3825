package harness

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseGCTrace(t *testing.T) {
	log := strings.Join([]string{
		`time=... level=WARN msg="identity is disabled"`,
		"gc 1 @0.004s 1%: 0.011+0.52+0.003 ms clock, 0.011+0.10/0.2/0+0.003 ms cpu, 3->3->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 1 P",
		"gc 2 @1.500s 0%: 0.020+1.1+0.045 ms clock, 0.020+0/0.3/0+0.045 ms cpu, 4->4->1 MB, 5 MB goal, 0 MB stacks, 0 MB globals, 1 P",
		"gc 3 @1.000s 1%: 1.5+0.3+2.5 ms clock, 3+0/0/0+5 ms cpu, 3->3->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)",
		"gc 4 @2.0s 0%: garbage",
		"gc x @2.0s 0%: 1+1+1 ms clock",
		"scvg: 0 MB released",
	}, "\n")
	got := ParseGCTrace(strings.NewReader(log))
	want := []GC{{1, 11, 3}, {2, 20, 45}, {3, 1500, 2500}}
	if len(got) != len(want) {
		t.Fatalf("ParseGCTrace = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Num != want[i].Num || math.Abs(got[i].SweepTerminationUs-want[i].SweepTerminationUs) > 1e-6 ||
			math.Abs(got[i].MarkTerminationUs-want[i].MarkTerminationUs) > 1e-6 {
			t.Errorf("collection %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	pauses := Pauses(got)
	wantP := []float64{11, 3, 20, 45, 1500, 2500}
	for i := range wantP {
		if math.Abs(pauses[i]-wantP[i]) > 1e-6 {
			t.Fatalf("Pauses = %v, want %v", pauses, wantP)
		}
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		p, want float64
	}{{0, 1}, {10, 1}, {11, 2}, {50, 5}, {90, 9}, {99.9, 10}, {100, 10}}
	for _, tt := range tests {
		if got := Percentile(xs, tt.p); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 99); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
	if xs[0] != 5 {
		t.Errorf("Percentile sorted its argument: %v", xs)
	}
}

func TestWaitHTTP(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := WaitHTTP(srv.URL, 5*time.Second); err != nil {
		t.Fatalf("WaitHTTP: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("answered 200 on call %d, want 3", n)
	}
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer never.Close()
	err := WaitHTTP(never.URL, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Errorf("WaitHTTP on a server answering 503 = %v, want an error naming status 503", err)
	}
}

func TestMachine(t *testing.T) {
	got := Machine("at start")
	if !strings.Contains(got, "CPUs") || !strings.Contains(got, "load average at start ") {
		t.Errorf("Machine = %q", got)
	}
}
