package harness

import (
	"math"
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
	r, err := ParseFortio(f)
	if err != nil {
		t.Fatal(err)
	}
	if total, failed := r.Counts(); total != 200 || failed != 0 {
		t.Errorf("Counts = %d, %d; want 200, 0", total, failed)
	}
	tests := []struct {
		p    float64
		want float64
	}{{50, 0.5784}, {99, 4.0}, {99.9, 7.6221}, {75, -1}}
	for _, tt := range tests {
		if got := r.PercentileMs(tt.p); math.Abs(got-tt.want) > 0.001 {
			t.Errorf("p%v = %.4f ms, want %.4f", tt.p, got, tt.want)
		}
	}
}

func TestFortioCounts(t *testing.T) {
	f, err := ParseFortio(strings.NewReader(`{"ActualQPS": 999.5, "RetCodes": {"200": 990, "503": 7, "-1": 3},
		"DurationHistogram": {"Count": 1000, "Percentiles": [{"Percentile": 99, "Value": 0.0021}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if total, failed := f.Counts(); total != 1000 || failed != 10 {
		t.Errorf("Counts = %d, %d; want 1000, 10", total, failed)
	}
	if got := f.PercentileMs(99); math.Abs(got-2.1) > 1e-9 {
		t.Errorf("p99 = %v ms, want 2.1", got)
	}
	if _, err := ParseFortio(strings.NewReader("not JSON")); err == nil {
		t.Error("ParseFortio accepted text that is not JSON")
	}
}
