package demo

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// proc is a process the demo started; it is stopped by its pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // the exit status, once done is closed
}

// supervisor starts processes with their output in per-process log files and
// stops them, in reverse order, at the end.
type supervisor struct {
	dir   string
	procs []*proc
	died  chan *proc // a process that exited before stop was asked
}

func newSupervisor(dir string) *supervisor {
	return &supervisor{dir: dir, died: make(chan *proc, 64)}
}

// start runs bin with env added to the demo's environment; extra are
// handed to it as descriptors 3, 4…
func (s *supervisor) start(name string, env []string, extra []*os.File, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.ExtraFiles = extra
	// Its own process group: a Ctrl-C in the terminal reaches the demo
	// only, which then stops everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
		select {
		case s.died <- p:
		default:
		}
	}()
	s.procs = append(s.procs, p)
	return p, nil
}

// stop ends one process: SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM: killed", p.name, p.cmd.Process.Pid, grace)
	}
}

// stopAll stops every process at once (stop what must go first before).
func (s *supervisor) stopAll(grace time.Duration) error {
	errs := make([]error, len(s.procs))
	var wg sync.WaitGroup
	for i, p := range s.procs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.stop(grace) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// tail returns the last lines of a process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
