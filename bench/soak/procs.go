package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the soak started; it is stopped by its pid.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   string
	admin string // admin address (/ready, /metrics), or ""
	done  chan struct{}
	err   error // the exit status, once done is closed
}

// startProc runs args with extra environment variables, its output in
// dir/name.log. The process gets SIGTERM if the soak dies.
func startProc(dir, name string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", name, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// rssKiB is the process's VmRSS.
func (p *proc) rssKiB() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.name, err)
	}
	defer f.Close()
	return parseVmRSS(f)
}

// parseVmRSS reads VmRSS (KiB) from a /proc/PID/status.
func parseVmRSS(r io.Reader) (int64, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// goStats is what the soak reads from a proxy's admin /metrics.
type goStats struct {
	Goroutines int64
	GCCount    int64
	OpenFDs    int64
}

// scrape reads go_goroutines and go_gc_duration_seconds_count from the
// process's admin /metrics.
func (p *proc) scrape(ctx context.Context, c *http.Client) (goStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/metrics", nil)
	if err != nil {
		return goStats{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return goStats{}, fmt.Errorf("scraping %s: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return goStats{}, fmt.Errorf("scraping %s: status %d", p.name, resp.StatusCode)
	}
	st, err := parseGoStats(resp.Body)
	if err != nil {
		return goStats{}, fmt.Errorf("scraping %s: %w", p.name, err)
	}
	return st, nil
}

// parseGoStats picks the Go collector's goroutine and GC counts out of the
// Prometheus text format.
func parseGoStats(r io.Reader) (goStats, error) {
	var st goStats
	var haveG, haveGC bool
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := s.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		switch name {
		case "go_goroutines", "go_gc_duration_seconds_count", "process_open_fds":
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return st, fmt.Errorf("%s: %w", line, err)
			}
			switch name {
			case "go_goroutines":
				st.Goroutines, haveG = int64(v), true
			case "go_gc_duration_seconds_count":
				st.GCCount, haveGC = int64(v), true
			default:
				st.OpenFDs = int64(v)
			}
		}
	}
	if err := s.Err(); err != nil {
		return st, err
	}
	if !haveG || !haveGC {
		return st, errors.New("no go_goroutines or go_gc_duration_seconds_count in /metrics")
	}
	return st, nil
}

// waitReady polls the process's /ready until it answers 200.
func (p *proc) waitReady(timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get("http://" + p.admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v (%v):\n%s", p.name, timeout, err, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
