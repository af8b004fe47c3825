package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// FortioResult is the part of fortio's -json output the benchmark and the
// soak read.
type FortioResult struct {
	ActualQPS         float64
	ActualDuration    int64 // nanoseconds
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Max         float64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	ErrorsDurationHistogram struct {
		Count int64
	}
}

// FortioArgs is the command line of a fortio load of url at qps (0: as
// fast as it goes) over conns keep-alive connections for d, reporting
// p50/p99/p99.9 as JSON in jsonPath.
func FortioArgs(fortio, jsonPath, url string, qps, conns int, d time.Duration) []string {
	return []string{fortio, "load", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(conns), "-t", d.String(),
		"-p", "50,99,99.9", "-json", jsonPath, "-quiet", "-timeout", "5s", "-payload-size", "0", url}
}

// RunFortio runs argv (FortioArgs, perhaps under taskset or in a network
// namespace) and reads the result it wrote to jsonPath.
func RunFortio(argv []string, jsonPath string) (*FortioResult, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("fortio load: %v: %s", err, stderr.String())
	}
	f, err := os.Open(jsonPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseFortio(f)
}

// ParseFortio reads fortio's -json output.
func ParseFortio(r io.Reader) (*FortioResult, error) {
	var f FortioResult
	if err := json.NewDecoder(r).Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing fortio JSON: %w", err)
	}
	return &f, nil
}

// PercentileMs is percentile p in milliseconds, or -1 when fortio did not
// report it.
func (f *FortioResult) PercentileMs(p float64) float64 {
	for _, q := range f.DurationHistogram.Percentiles {
		if q.Percentile == p {
			return q.Value * 1000
		}
	}
	return -1
}

// Counts is every request and those that did not get a 200 (fortio counts
// connection errors under code -1).
func (f *FortioResult) Counts() (total, failed int64) {
	for code, n := range f.RetCodes {
		total += n
		if code != "200" {
			failed += n
		}
	}
	return total, failed
}
