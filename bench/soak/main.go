// Command soak holds a meshed pair with mTLS under a steady load and
// judges whether it stays flat: fortio → outbound weft-proxy → mTLS
// (certificates from a local identity service: weft-controller identity
// with static tokens, bench/meshpair) → inbound weft-proxy →
// fortio's server, at a fixed rate for -duration (10 minutes for `make
// soak`), with each proxy's RSS (VmRSS) and goroutines (go_goroutines on
// its admin /metrics) sampled every -interval. Flat means: no failed
// request; RSS's least-squares slope after the warm-up under
// -max-slope MiB/min (judged only on runs long enough to show a trend);
// goroutines back within -goroutine-slack of their count after a warm-up
// load once the load stops. The samples and the verdict go to
// OUT/NAME.md and OUT/NAME.json; the exit status is non-zero unless flat.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/bench/harness"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/imagebuild"
)

type options struct {
	duration, interval, warmupLoad, settle time.Duration
	qps, conns                             int
	path, out, name, fortio, proxyBin      string
	h2                                     bool
	limits                                 Limits
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "length of the load")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "between samples")
	flag.DurationVar(&o.warmupLoad, "warmup-load", 10*time.Second, "load before the soak, after which goroutines are counted as the reference")
	flag.DurationVar(&o.settle, "settle", 20*time.Second, "how long goroutines may take to come back after the load")
	flag.IntVar(&o.qps, "qps", 1000, "request rate")
	flag.IntVar(&o.conns, "c", 16, "client connections")
	flag.StringVar(&o.path, "path", "/echo?size=1024", "request path on the backend (fortio server: /echo?size=N&status=CODE:PERCENT fails some)")
	flag.StringVar(&o.out, "out", "bench/results", "directory for NAME.md and NAME.json")
	flag.StringVar(&o.name, "name", "soak", "base name of the result files")
	flag.StringVar(&o.fortio, "fortio", "", "fortio binary (default: $HOME/.cache/weft/bin/fortio, else PATH)")
	flag.StringVar(&o.proxyBin, "proxy-bin", "", "a prebuilt weft-proxy (default: built from this tree)")
	flag.BoolVar(&o.h2, "h2", false, "fortio sends HTTP/2 (h2c, prior knowledge): HTTP/2 on every hop, through the proxies' own HTTP/2 server and client")
	warmup := flag.Duration("warmup", 2*time.Minute, "start of the load left out of the RSS trend")
	minTrend := flag.Duration("min-trend", 5*time.Minute, "judge the RSS slope only if the samples after -warmup span this long")
	flag.Float64Var(&o.limits.MaxSlopeMiBPerMin, "max-slope", 0.1, "RSS slope limit, MiB per minute")
	flag.Int64Var(&o.limits.GoroutineSlack, "goroutine-slack", 10, "goroutines, and open file descriptors, allowed above the reference after the load")
	flag.Parse()
	o.limits.WarmupS, o.limits.MinTrendS = warmup.Seconds(), minTrend.Seconds()
	rep, err := run(o)
	if err != nil {
		log.Fatalf("soak: %v", err)
	}
	if !rep.Flat {
		log.Fatalf("soak: not flat: %s", strings.Join(rep.Reasons, "; "))
	}
}

func run(o options) (*Report, error) {
	if o.duration <= 0 || o.interval <= 0 || o.qps <= 0 || o.conns <= 0 {
		return nil, errors.New("-duration, -interval, -qps and -c must be positive")
	}
	fortio, err := harness.FindFortio(o.fortio)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "weft-soak-")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if keep {
			log.Printf("process logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	bin := filepath.Join(dir, "bin")
	pkgs := []string{"./cmd/weft-controller"}
	if o.proxyBin == "" {
		pkgs = append(pkgs, "./cmd/weft-proxy")
	}
	build := exec.Command("go", append([]string{"build", "-trimpath", "-tags", imagebuild.BuildTags, "-o", bin + "/"}, pkgs...)...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	proxyBin := o.proxyBin
	if proxyBin == "" {
		proxyBin = filepath.Join(bin, "weft-proxy")
	}
	pr, err := startPair(dir, proxyBin, filepath.Join(bin, "weft-controller"), fortio, o.path)
	if err != nil {
		keep = true
		return nil, err
	}
	defer pr.stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; pr.stop(); os.Exit(130) }()

	rep, err := soak(o, fortio, dir, pr)
	if err != nil {
		keep = true
		return nil, err
	}
	md := rep.Markdown()
	fmt.Println(md)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.out, o.name+".md"), []byte(md), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.out, o.name+".json"), append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	keep = !rep.Flat
	return rep, nil
}

// soak runs the warm-up load, the sampled load and the settling, and
// judges the result.
func soak(o options, fortio, dir string, pr *pair) (*Report, error) {
	ctx := context.Background()
	c := &http.Client{Timeout: 5 * time.Second}
	proxies := pr.proxies()
	res := make([]ProxyResult, len(proxies))
	scrapeAll := func() ([]goStats, error) {
		out := make([]goStats, len(proxies))
		for i, p := range proxies {
			if p.exited() {
				return nil, fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
			}
			st, err := p.scrape(ctx, c)
			if err != nil {
				return nil, err
			}
			out[i] = st
		}
		return out, nil
	}
	st, err := scrapeAll()
	if err != nil {
		return nil, err
	}
	for i, p := range proxies {
		res[i].Name = p.name
		res[i].GoroutinesIdle = st[i].Goroutines
	}

	log.Printf("warm-up load: %v at %d rps through %s", o.warmupLoad, o.qps, pr.url)
	warm, err := runFortio(fortio, filepath.Join(dir, "warmup.json"), pr.url, o.qps, o.conns, o.warmupLoad, o.h2)
	if err != nil {
		return nil, err
	}
	peer, err := mtlsPeer(ctx, c, pr.in)
	if err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second)
	if st, err = scrapeAll(); err != nil {
		return nil, err
	}
	for i := range res {
		res[i].GoroutinesBefore = st[i].Goroutines
		res[i].FDsBefore = st[i].OpenFDs
	}

	log.Printf("load: %v at %d rps, sampling every %v", o.duration, o.qps, o.interval)
	start := time.Now()
	type fortioDone struct {
		r   *harness.FortioResult
		err error
	}
	done := make(chan fortioDone, 1)
	go func() {
		r, err := runFortio(fortio, filepath.Join(dir, "load.json"), pr.url, o.qps, o.conns, o.duration, o.h2)
		done <- fortioDone{r, err}
	}()
	sample := func(afterLoad bool) error {
		t := time.Since(start).Seconds()
		st, err := scrapeAll()
		if err != nil {
			return err
		}
		for i, p := range proxies {
			rss, err := p.rssKiB()
			if err != nil {
				return err
			}
			res[i].Samples = append(res[i].Samples, Sample{T: t, RSSKiB: rss, Goroutines: st[i].Goroutines, GCCount: st[i].GCCount, AfterLoad: afterLoad})
		}
		return nil
	}
	if err := sample(false); err != nil {
		return nil, err
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	var load fortioDone
loop:
	for {
		select {
		case load = <-done:
			break loop
		case <-tick.C:
			if err := sample(false); err != nil {
				<-done
				return nil, err
			}
			s := res[0].Samples[len(res[0].Samples)-1]
			log.Printf("%4.0fs  %s rss %.1f MiB, %d goroutines; %s rss %.1f MiB, %d goroutines", s.T,
				res[0].Name, float64(s.RSSKiB)/1024, s.Goroutines, res[1].Name,
				float64(res[1].Samples[len(res[1].Samples)-1].RSSKiB)/1024, res[1].Samples[len(res[1].Samples)-1].Goroutines)
		}
	}
	// The last reading, right after the load.
	if err := sample(true); err != nil {
		return nil, err
	}
	if load.err != nil {
		return nil, load.err
	}

	// Goroutines back: poll until every proxy is within the slack or the
	// settle time has passed; the last reading counts.
	deadline := time.Now().Add(o.settle)
	for {
		if st, err = scrapeAll(); err != nil {
			return nil, err
		}
		back := true
		for i := range res {
			res[i].GoroutinesAfter = st[i].Goroutines
			res[i].FDsAfter = st[i].OpenFDs
			back = back && st[i].Goroutines-res[i].GoroutinesBefore <= o.limits.GoroutineSlack &&
				st[i].OpenFDs-res[i].FDsBefore <= o.limits.GoroutineSlack
		}
		if back || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}

	rep := newReport(o, peer)
	rep.WarmupRequests, rep.WarmupFailures = warm.Counts()
	rep.Requests, rep.Failures = load.r.Counts()
	rep.RetCodes = load.r.RetCodes
	rep.ActualQPS = load.r.ActualQPS
	rep.P50Ms, rep.P99Ms, rep.P999Ms = load.r.PercentileMs(50), load.r.PercentileMs(99), load.r.PercentileMs(99.9)
	for i, p := range proxies {
		ss := res[i].Samples
		b, err := os.ReadFile(p.log)
		if err != nil {
			return nil, err
		}
		// Collections during the load: those numbered after the count at
		// its start, up to the count at its end.
		pauses := gcPauses(string(b), ss[0].GCCount+1, ss[len(ss)-1].GCCount)
		if len(pauses) > 0 {
			res[i].GCPauseP50Us, res[i].GCPauseP999Us, res[i].GCPauseMaxUs = harness.Percentile(pauses, 50), harness.Percentile(pauses, 99.9), harness.Percentile(pauses, 100)
		}
	}
	rep.judge(res)
	return rep, nil
}

// mtlsPeer checks, on the inbound proxy's metrics, that the requests it
// served came over mTLS from the outbound proxy's identity, and returns
// that identity.
func mtlsPeer(ctx context.Context, c *http.Client, in *proc) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.admin+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("scraping %s: %w", in.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("scraping %s: %w", in.name, err)
	}
	want := clientWorkload.Identity()
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, compat.MetricRequestTotal+"{") && strings.Contains(line, `direction="inbound"`) &&
			strings.Contains(line, compat.LabelTLS+`="true"`) && strings.Contains(line, compat.LabelClientID+`="`+want+`"`) {
			return want, nil
		}
	}
	return "", fmt.Errorf("%s served no request over mTLS from %s: is the pair meshed?", in.name, want)
}
