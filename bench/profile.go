package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/netnspair"
)

// profiler collects CPU and allocation profiles of the weft-proxy processes
// of one target during its max-rate phase (-profile), and writes their
// `go tool pprof -top` summaries next to the raw profiles.
type profiler struct {
	b      *bench
	target string
	procs  []*proc
	wg     sync.WaitGroup
	errs   []error
	mu     sync.Mutex
}

// startProfiles begins a CPU profile of each profiled process lasting
// seconds; wait collects it and the allocation profile.
func (b *bench) startProfiles(target string, procs []*proc, d time.Duration) *profiler {
	pr := &profiler{b: b, target: target}
	for _, p := range procs {
		if p.pprof != "" {
			pr.procs = append(pr.procs, p)
		}
	}
	secs := int((d - time.Second).Seconds())
	if secs < 1 {
		secs = 1
	}
	for _, p := range pr.procs {
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			pr.fetch(p, fmt.Sprintf("profile?seconds=%d", secs), "cpu")
		}()
	}
	return pr
}

func (pr *profiler) wait() error {
	pr.wg.Wait()
	for _, p := range pr.procs {
		pr.fetch(p, "allocs", "allocs")
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if len(pr.errs) > 0 {
		return fmt.Errorf("profiling %s: %v", pr.target, pr.errs)
	}
	return nil
}

func (pr *profiler) fail(err error) {
	pr.mu.Lock()
	pr.errs = append(pr.errs, err)
	pr.mu.Unlock()
}

func (pr *profiler) fetch(p *proc, path, kind string) {
	body, err := fetchPprof(p, path)
	if err != nil {
		pr.fail(err)
		return
	}
	defer body.Close()
	base := filepath.Join(pr.b.o.profile, fileName(pr.target)+"."+p.name+"."+kind)
	f, err := os.Create(base + ".pb.gz")
	if err != nil {
		pr.fail(err)
		return
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		pr.fail(err)
		return
	}
	args := []string{"tool", "pprof", "-top", "-nodecount=40"}
	if kind == "allocs" {
		args = append(args, "-sample_index=alloc_space")
	}
	args = append(args, filepath.Join(pr.b.bin, "weft-proxy"), base+".pb.gz")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		pr.fail(fmt.Errorf("go tool pprof: %v: %s", err, out))
		return
	}
	if err := os.WriteFile(base+".txt", out, 0o644); err != nil {
		pr.fail(err)
	}
}

// fetchPprof gets a pprof endpoint of p: over HTTP, or with curl inside
// its network namespace.
func fetchPprof(p *proc, path string) (io.ReadCloser, error) {
	url := "http://" + p.pprof + "/debug/pprof/" + path
	if p.pprofNS == "" {
		c := &http.Client{Timeout: 2 * time.Minute}
		resp, err := c.Get(url)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}
	out, err := netnspair.Run(p.pprofNS, "curl", "-sf", "--max-time", "120", url)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(out)), nil
}

func fileName(s string) string {
	return strings.NewReplacer(" ", "-", "/", "-", ".", "-").Replace(s)
}
