// Package harness is what the proxy benchmark (bench) and the soak
// (bench/soak) share: where fortio is, a description of the machine they
// ran on, waiting for a server to answer, the stop-the-world pauses in a
// GODEBUG=gctrace=1 log, and nearest-rank percentiles.
package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FindFortio is the fortio binary to run: flagged when set, else the one
// make bench-tools builds into $HOME/.cache/weft/bin, else fortio in PATH.
func FindFortio(flagged string) (string, error) {
	if flagged != "" {
		return flagged, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache/weft/bin/fortio")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("fortio"); err == nil {
		return p, nil
	}
	return "", errors.New("fortio not found: make bench-tools (GOBIN=$HOME/.cache/weft/bin go install fortio.org/fortio@v1.66.5)")
}

// Machine describes where a run happened: CPU model, CPUs, kernel and the
// load average, labelled by when ("at start", "at the end"): other work on
// a shared machine skews every number of the run.
func Machine(when string) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("%s, %d CPUs, %s, load average %s %s", model, runtime.NumCPU(), kernel, when, load)
}

// WaitHTTP polls url until it answers 200, for at most timeout.
func WaitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New("status " + strconv.Itoa(resp.StatusCode))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering 200 after %v: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// GC is one collection of a GODEBUG=gctrace=1 log ("gc 7 @1.2s 0%:
// A+B+C ms clock, …"): its number and its two stop-the-world pauses, A
// (sweep termination) and C (mark termination), in microseconds.
type GC struct {
	Num                                   int64
	SweepTerminationUs, MarkTerminationUs float64
}

// ParseGCTrace reads the collections of a gctrace log; other lines are
// skipped.
func ParseGCTrace(r io.Reader) []GC {
	var out []GC
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), "gc ")
		if !ok {
			continue
		}
		numS, rest, ok := strings.Cut(rest, " ")
		if !ok {
			continue
		}
		num, err := strconv.ParseInt(numS, 10, 64)
		if err != nil {
			continue
		}
		_, rest, ok = strings.Cut(rest, "%: ")
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
		out = append(out, GC{Num: num, SweepTerminationUs: a * 1000, MarkTerminationUs: c * 1000})
	}
	return out
}

// Pauses is every stop-the-world pause of gcs (two per collection), in
// microseconds, in the order they happened.
func Pauses(gcs []GC) []float64 {
	out := make([]float64, 0, 2*len(gcs))
	for _, g := range gcs {
		out = append(out, g.SweepTerminationUs, g.MarkTerminationUs)
	}
	return out
}

// Percentile is the nearest-rank percentile p (0–100) of xs, or 0 when xs
// is empty.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// FreeAddr is a loopback address nothing listened on a moment ago, for a
// third-party binary that must be told its port and cannot bind port 0
// and say where (fortio's server, haproxy, nginx). Another process may
// take the port before the binary binds it; weft's binaries bind port 0
// and report their addresses (--addr-file) instead.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
