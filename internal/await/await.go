// Package await holds a command back until the local proxy is ready, runs
// it, and optionally asks the proxy to shut down afterwards: the
// linkerd-await wrapper that lets meshed Jobs finish, and the proxy's
// postStart hook that makes the app containers wait.
package await

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// Options are the wrapper's flags.
type Options struct {
	Admin    string        // the proxy's admin address, e.g. 127.0.0.1:4191
	Timeout  time.Duration // how long to wait for readiness (0: forever)
	Shutdown bool          // POST /shutdown after the command
	Command  []string      // nothing: only wait
}

// WaitReady polls GET /ready until it answers 200, ctx ends or the timeout
// passes.
func WaitReady(ctx context.Context, admin string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	client := &http.Client{Timeout: time.Second}
	var last error
	for backoff := 10 * time.Millisecond; ; backoff = min(backoff*2, time.Second) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/ready", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/ready: %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proxy at %s was not ready in time: %v", admin, last)
		case <-time.After(backoff):
		}
	}
}

// Run waits for the proxy, runs the command (signals forwarded), then
// shuts the proxy down if asked; it returns the command's exit code.
func Run(ctx context.Context, o Options) (int, error) {
	if err := WaitReady(ctx, o.Admin, o.Timeout); err != nil {
		return 1, err
	}
	if len(o.Command) == 0 {
		return 0, nil
	}
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		shutdown(o)
		return 127, fmt.Errorf("starting %s: %w", o.Command[0], err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
loop:
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err = <-done:
			break loop
		}
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
		if code < 0 {
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	} else if err != nil {
		code = 1
	}
	if serr := shutdown(o); serr != nil {
		return code, serr
	}
	return code, nil
}

func shutdown(o Options) error {
	if !o.Shutdown {
		return nil
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+o.Admin+"/shutdown", "text/plain", nil)
	if err != nil {
		return fmt.Errorf("asking the proxy to shut down: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("asking the proxy to shut down: %s (is config.linkerd.io/proxy-admin-shutdown enabled?)", resp.Status)
	}
	return nil
}
