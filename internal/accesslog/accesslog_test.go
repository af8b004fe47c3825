package accesslog

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type stuckWriter chan struct{}

func (s stuckWriter) Write(p []byte) (int, error) { <-s; return len(p), nil }

// TestStuckWriter: with the destination stuck, Log never blocks (lines
// beyond the queue are dropped and counted) and Close returns.
func TestStuckWriter(t *testing.T) {
	stuck := make(stuckWriter)
	defer close(stuck)
	l, err := New(FormatJSON, stuck, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		l.Log(Entry{Method: "GET", URI: "/"})
	}
	l.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("1000 Log calls and Close took %v with a stuck writer", d)
	}
	if got := testutil.ToFloat64(l.dropped); got < 990 {
		t.Errorf("dropped = %v, want ≥ 990 (queue 4)", got)
	}
}

func TestApacheEscapes(t *testing.T) {
	line := string(AppendApache(nil, Entry{ClientAddr: "[::1]:5000", Method: "GET", URI: `/a"b`, Version: "HTTP/1.1", Status: 200,
		UserAgent: "x\ny", Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}))
	want := `::1 - - [30/Nov/2026:12:00:00 +0000] "GET /a\"b HTTP/1.1" 200 - "-" "x\ny"`
	if line != want || strings.Contains(line, "\n") {
		t.Errorf("got  %s\nwant %s", line, want)
	}
	if err := Validate("xml"); err == nil {
		t.Error("format xml accepted")
	}
}
