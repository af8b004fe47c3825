package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the benchmark started; it is stopped by pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	// pprof is the address of the process's net/http/pprof (weft-proxy
	// built with -tags weftpprof in -profile mode), or "".
	pprof string
	// pprofNS is the network namespace pprof is reached in, or "".
	pprofNS string
	// ns is the network namespace it runs in, or "".
	ns string
	// gcLog is its log when it runs with GODEBUG=gctrace=1, or "".
	gcLog string
}

// startProc runs args pinned to cpu (-1: unpinned), logging to dir/name.log.
func startProc(dir, name string, cpu int, args ...string) (*proc, error) {
	return startProcEnv(dir, name, cpu, nil, args...)
}

// startProcEnv is startProc with extra environment variables.
func startProcEnv(dir, name string, cpu int, env []string, args ...string) (*proc, error) {
	if cpu >= 0 {
		if _, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, args...)
		}
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// pids returns the process and its children (nginx's worker, taskset's exec'd child is the same pid).
func (p *proc) pids() []int {
	root := p.cmd.Process.Pid
	out := []int{root}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(root) {
			out = append(out, pid)
		}
	}
	return out
}

// rssKiB sums VmRSS over the process tree.
func (p *proc) rssKiB() int64 {
	var sum int64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				sum += v
			}
		}
	}
	return sum
}

// cpuSeconds sums utime+stime over the process tree.
func (p *proc) cpuSeconds() float64 {
	u, s := p.cpuTimes()
	return u + s
}

// cpuTimes sums utime and stime (user and system CPU seconds) over the
// process tree.
func (p *proc) cpuTimes() (user, sys float64) {
	var ut, st int64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 13 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ut, st = ut+u, st+s
		}
	}
	return float64(ut) / 100, float64(st) / 100 // USER_HZ
}
