package main

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// gcPauses reads GODEBUG=gctrace=1 lines ("gc 7 @1.2s 0%: A+B+C ms clock,
// …") and returns each stop-the-world pause in microseconds: A (sweep
// termination) and C (mark termination) of every cycle. Other lines are
// skipped.
func gcPauses(r io.Reader) []float64 {
	var out []float64
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "gc ") {
			continue
		}
		_, rest, ok := strings.Cut(line, "%: ")
		if !ok {
			continue
		}
		clock, _, ok := strings.Cut(rest, " ms clock")
		if !ok {
			continue
		}
		parts := strings.Split(clock, "+")
		if len(parts) != 3 {
			continue
		}
		a, errA := strconv.ParseFloat(parts[0], 64)
		c, errC := strconv.ParseFloat(parts[2], 64)
		if errA != nil || errC != nil {
			continue
		}
		out = append(out, a*1000, c*1000)
	}
	return out
}

// percentile is the nearest-rank percentile p (0–100) of xs, or 0 if empty.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	if i < 0 {
		i = 0
	}
	return s[min(i, len(s)-1)]
}
