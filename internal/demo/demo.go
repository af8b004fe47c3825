// Package demo runs a whole mesh on one machine without Kubernetes: the
// control plane (identity with a CA it generates, destination fed by a
// registry file), a small application of four services each behind its own
// weft-proxy, steady traffic, and a live view of the golden metrics computed
// from the proxies' own /metrics. It backs `weft demo`.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// Config is how the demo runs.
type Config struct {
	For       time.Duration // 0: until ctx ends
	Interval  time.Duration // between refreshes of the view
	Rate      float64       // the bot's requests per second
	FailRate  float64       // fraction of voting's requests that fail
	SlowDelay time.Duration // latency added by emoji's last replica
	BinDir    string        // where weft-proxy and weft-controller are; "" looks beside Self, then in PATH
	Self      string        // the executable that serves `demo app` (the weft CLI)
	Mode      string        // explicit, transparent, or auto (transparent when root and able)
	JSON      bool          // one JSON event per line instead of tables
	KeepLogs  bool          // keep the processes' logs and files after a clean stop
	Live      bool          // redraw the tables in place (a terminal)
	Out       io.Writer
	Log       *slog.Logger
}

// ProcessInfo names a process the demo started.
type ProcessInfo struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Admin string `json:"admin,omitempty"` // a proxy's or controller's admin address
}

// Event is a line of the JSON output.
type Event struct {
	Event     string        `json:"event"` // started, frame, stopped
	Dir       string        `json:"dir,omitempty"`
	Processes []ProcessInfo `json:"processes,omitempty"`
	Frame     *Frame        `json:"frame,omitempty"`
}

// Run starts everything, shows the view until ctx ends or cfg.For passes,
// then stops every process it started and removes its files.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Interval <= 0 {
		return errors.New("--interval must be positive")
	}
	if cfg.Rate <= 0 || cfg.Rate > 2000 {
		return fmt.Errorf("--rate %v: want between 0 and 2000 requests per second", cfg.Rate)
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return fmt.Errorf("--fail-rate %v: want a fraction between 0 and 1", cfg.FailRate)
	}
	proxyBin, err := findBinary(cfg, "weft-proxy")
	if err != nil {
		return err
	}
	ctlBin, err := findBinary(cfg, "weft-controller")
	if err != nil {
		return err
	}
	transparent, err := chooseMode(cfg.Mode)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "weft-demo-")
	if err != nil {
		return err
	}
	sup := newSupervisor(dir)
	var netw network
	defer func() {
		if stopErr := sup.stopAll(10 * time.Second); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		if netErr := netw.teardown(); netErr != nil {
			err = errors.Join(err, netErr)
		}
		if err != nil || cfg.KeepLogs {
			cfg.Log.Info("process logs are kept for you to read", "dir", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	out := &outWriter{w: cfg.Out}
	cfg.Out = out
	svcs := services(cfg.SlowDelay, cfg.FailRate)
	reps, err := plan(svcs, transparent)
	if err != nil {
		return err
	}
	if transparent {
		if err := netw.setup(ctx, reps); err != nil {
			return fmt.Errorf("transparent mode: %w (--mode explicit needs no namespaces)", err)
		}
	}
	l := launcher{cfg: cfg, sup: sup, dir: dir, proxyBin: proxyBin, ctlBin: ctlBin, svcs: svcs, reps: reps, transparent: transparent}
	bot, infos, err := l.startAll(ctx)
	if err != nil {
		return err
	}
	emit := func(e Event) {
		if cfg.JSON {
			b, _ := json.Marshal(e)
			fmt.Fprintf(cfg.Out, "%s\n", b)
		}
	}
	emit(Event{Event: "started", Dir: dir, Processes: infos})
	if !cfg.JSON {
		mode := "explicit mode: each proxy on its own loopback ports, apps call through them"
		if transparent {
			mode = "transparent mode: each replica in its own network namespace, its traffic sent through its proxy by iptables"
		}
		fmt.Fprintf(cfg.Out, "%s\nstarted %d processes (logs in %s):\n", mode, len(infos), dir)
		for _, p := range infos {
			fmt.Fprintf(cfg.Out, "  %-22s pid %-7d %s\n", p.Name, p.PID, adminURL(p.Admin))
		}
		fmt.Fprintln(cfg.Out)
	}

	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	prev, _ := scrapeAll(ctx, client, reps)
	prevAt := time.Now()
	var end <-chan time.Time
	if cfg.For > 0 {
		end = time.After(cfg.For)
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	show := func(final bool) {
		cur, _ := scrapeAll(context.Background(), client, reps)
		now := time.Now()
		f := frame(reps, svcs, prev, cur, now.Sub(prevAt))
		f.Elapsed, f.Final = now.Sub(start).Seconds(), final
		prev, prevAt = cur, now
		if cfg.JSON {
			emit(Event{Event: "frame", Frame: &f})
		} else {
			render(cfg.Out, f, cfg.Live && !final)
		}
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case p := <-sup.died:
			return fmt.Errorf("%s exited unexpectedly (%v):\n%s", p.name, p.err, p.tail())
		case <-tick.C:
			show(false)
			if err := out.failed(); err != nil {
				cfg.Log.Info("the output is closed: stopping", "err", err)
				break loop
			}
		}
	}
	// Stop the traffic first, so that the last frame's totals are final.
	if err := bot.stop(10 * time.Second); err != nil {
		return err
	}
	show(true)
	if err := sup.stopAll(10 * time.Second); err != nil {
		return err
	}
	emit(Event{Event: "stopped", Processes: infos})
	if !cfg.JSON {
		fmt.Fprintf(cfg.Out, "stopped %d processes\n", len(infos))
	}
	return nil
}

// outWriter keeps the first error writing the view (a closed pipe) so that
// the demo stops, everything it started with it.
type outWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (o *outWriter) Write(b []byte) (int, error) {
	n, err := o.w.Write(b)
	if err != nil {
		o.mu.Lock()
		if o.err == nil {
			o.err = err
		}
		o.mu.Unlock()
	}
	return n, err
}

func (o *outWriter) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func adminURL(addr string) string {
	if addr == "" {
		return ""
	}
	return "http://" + addr + "/metrics"
}

// chooseMode resolves --mode: auto is transparent when this machine can
// run it, explicit otherwise.
func chooseMode(mode string) (transparent bool, err error) {
	switch mode {
	case "explicit":
		return false, nil
	case "transparent":
		if err := transparentReady(); err != nil {
			return false, err
		}
		return true, nil
	case "auto", "":
		return transparentReady() == nil, nil
	}
	return false, fmt.Errorf("--mode %q: want auto, explicit or transparent", mode)
}

// waitReady polls a process's /ready for up to 30 s.
func waitReady(ctx context.Context, p *proc, admin string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 30s (last: %v):\n%s", p.name, err, p.tail())
		}
	}
}

// scrapeAll scrapes every replica's proxy at once.
func scrapeAll(ctx context.Context, client *http.Client, reps []*replica) (map[string]sample, error) {
	out := make(map[string]sample, len(reps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := scrape(ctx, client, r.admin)
			mu.Lock()
			defer mu.Unlock()
			out[r.name] = s
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// findBinary looks for a Weft binary in BinDir, beside Self, then in PATH.
func findBinary(cfg Config, name string) (string, error) {
	dirs := []string{cfg.BinDir}
	if cfg.BinDir == "" && cfg.Self != "" {
		dirs = []string{filepath.Dir(cfg.Self)}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if cfg.BinDir == "" {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %v or PATH: run `make build` and use ./bin/weft, or pass --bin-dir", name, dirs)
}
