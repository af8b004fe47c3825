// Command bench compares weft-proxy side by side with no proxy, haproxy,
// nginx and Go's httputil.ReverseProxy in one run on loopback, with fortio
// as the load generator: latency added at a fixed rate, maximum throughput,
// memory and CPU per request. Results go to bench/results/latest.{md,json}.
// With -quick it runs every target briefly and only checks that each one
// answered every request with 200 (CI's correctness mode, not a timing).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/bench/harness"
	"github.com/weftmesh/weft/internal/imagebuild"
)

type options struct {
	duration time.Duration
	quick    bool
	qps      int
	conns    int
	size     int
	out      string
	fortio   string
	only     string // comma-separated target names; "" runs all
	profile  string // directory for weft-proxy profiles; "" disables
	baseline string // another weft-proxy binary measured beside this tree's
	rounds   int    // times the selected rows run; the report holds medians
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 15*time.Second, "length of each load phase")
	flag.BoolVar(&o.quick, "quick", false, "correctness mode: 1s phases, fail unless every request got 200, every byte and connection got through")
	flag.IntVar(&o.qps, "qps", 1000, "fixed request rate")
	flag.IntVar(&o.conns, "c", 16, "connections")
	flag.IntVar(&o.size, "size", 1024, "response body bytes")
	flag.StringVar(&o.out, "out", "bench/results", "where latest.md and latest.json go")
	flag.StringVar(&o.fortio, "fortio", "", "fortio binary (default: $HOME/.cache/weft/bin/fortio or PATH)")
	flag.StringVar(&o.only, "only", "", "comma-separated targets to run (direct always runs first as the baseline)")
	flag.StringVar(&o.profile, "profile", "", "directory: CPU and allocation profiles of every weft-proxy at max rate (builds with -tags weftpprof)")
	flag.StringVar(&o.baseline, "baseline", "", "another weft-proxy binary (e.g. built from main) measured in the same run, as rows \"… (baseline)\"")
	flag.IntVar(&o.rounds, "rounds", 1, "run the selected rows this many times in turn and report each number's median, and every round's measure per goal (rounds.go)")
	flag.Parse()
	if o.rounds < 1 {
		log.Fatalf("bench: -rounds %d: want 1 or more", o.rounds)
	}
	if o.quick {
		o.duration = time.Second
	}
	if err := run(o); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

// target is one way of reaching the backend.
type target struct {
	name  string
	start func(b *bench) (url string, procs []*proc, err error)
	note  string
	kind  kind   // what load: fortio (default), h2load, bulk TCP, new connections
	base  string // the row latency is "added" over; "" is "direct"
}

type bench struct {
	o       options
	dir     string
	bin     string
	backend string // host:port
	procs   []*proc
	weftBin string // weft-proxy binary; "" is the one built from this tree

	// The current target's network-namespace layout (pairs.go).
	nsSeq    int
	clientNS string       // where the load generator runs; "" is here
	nsBulk   *proc        // the namespace rows' tcpbulk server
	cleanups []func()     // run, last first, after its processes stop
	verify   func() error // checked after its load, before its processes stop
	current  []*proc      // its measured processes
}

// cleanup registers f to run after the current target.
func (b *bench) cleanup(f func()) { b.cleanups = append(b.cleanups, f) }

// endTarget runs the current target's cleanups and forgets its layout.
func (b *bench) endTarget() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups, b.clientNS, b.verify, b.nsBulk = nil, "", nil, nil
}

func run(o options) error {
	fortio, err := harness.FindFortio(o.fortio)
	if err != nil {
		return err
	}
	o.fortio = fortio
	dir, err := os.MkdirTemp("", "weft-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The namespace rows run weft-proxy as UID 2102: it must reach its binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	b := &bench{o: o, dir: dir, bin: filepath.Join(dir, "bin")}
	defer b.stopAll()
	defer b.endTarget()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		for _, p := range b.current {
			p.stop()
		}
		b.stopAll()
		b.endTarget()
		os.Exit(130)
	}()

	tags := imagebuild.BuildTags // as release binaries
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
		tags += ",weftpprof"
	}
	buildArgs := []string{"build", "-trimpath", "-tags", tags, "-o", b.bin + "/"}
	build := exec.Command("go", append(buildArgs, "./cmd/weft-proxy", "./bench/naiveproxy", "./bench/tcpbulk", "./cmd/weft-proxy-init", "./cmd/weft-controller")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	if b.backend, err = harness.FreeAddr(); err != nil {
		return err
	}
	be, err := startProc(dir, "backend", 0, fortio, "server", "-http-port", b.backend, "-grpc-port", "disabled", "-redirect-port", "disabled")
	if err != nil {
		return err
	}
	b.procs = append(b.procs, be)
	if err := harness.WaitHTTP("http://"+b.backend+"/echo", 10*time.Second); err != nil {
		return fmt.Errorf("fortio backend: %w", err)
	}

	rep := &Report{Date: time.Now().UTC().Format(time.RFC3339), Machine: harness.Machine("at start"), Duration: o.duration.String(), QPS: o.qps, Conns: o.conns, BodySize: o.size}
	if err := nsReady(); err != nil {
		rep.Layout = "not run: " + err.Error()
	} else {
		rep.Layout = "client (" + nsClientIP + ") and server (" + nsServerIP + ") network namespaces joined by a veth; meshed rows: linkerd-init's rules applied by weft-proxy-init in both, each weft-proxy started with no arguments as UID 2102 (transparent mode)"
	}
	var failures []error
	var rounds []*Report
	for i := range o.rounds {
		if o.rounds > 1 {
			log.Printf("round %d of %d", i+1, o.rounds)
		}
		round := &Report{}
		failures = append(failures, b.round(round)...)
		round.evaluate()
		rounds = append(rounds, round)
	}
	rep.Rows = medianRows(rounds) // one round: its own rows
	rep.evaluate()
	if o.rounds > 1 {
		rep.addRounds(rounds)
	}
	md := rep.Markdown()
	fmt.Println(md)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "latest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "latest.json"), js, 0o644); err != nil {
		return err
	}
	return errors.Join(failures...)
}

// round runs the selected targets once into rep, returning what failed.
func (b *bench) round(rep *Report) []error {
	var failures []error
	// -only runs the rows the selected ones' latency is "added" over too.
	bases := map[string]bool{}
	for _, t := range targets() {
		if b.o.selected(t.name) && t.base != "" {
			bases[t.base] = true
		}
	}
	for _, t := range targets() {
		if !b.o.selected(t.name) && !bases[t.name] {
			continue
		}
		row, err := b.runTarget(t)
		if errors.Is(err, errNoBaseline) {
			continue
		}
		var skip skipError
		if errors.As(err, &skip) {
			log.Printf("skipping %s: %v", t.name, skip.err)
			rep.Rows = append(rep.Rows, Row{Target: t.name, Kind: t.kind.String(), Note: "skipped: " + skip.err.Error()})
			continue
		}
		if err != nil {
			failures = append(failures, fmt.Errorf("%s: %w", t.name, err))
			continue
		}
		row.Note, row.Kind = t.note, t.kind.String()
		base := t.base
		if base == "" {
			base = "direct"
		}
		if d := rep.row(base); d != nil && t.kind.latency() {
			row.AddedP50Ms, row.AddedP99Ms, row.AddedP999Ms = row.P50Ms-d.P50Ms, row.P99Ms-d.P99Ms, row.P999Ms-d.P999Ms
		}
		rep.Rows = append(rep.Rows, *row)
		log.Printf("%-36s %s", t.name, row.summary())
	}
	return failures
}

// measure runs the fixed-rate and max-rate phases against url.
func (b *bench) measure(name, url string, procs []*proc) (*Row, error) {
	if err := b.waitURL(url, false); err != nil {
		return nil, err
	}
	row := &Row{Target: name, HasProcesses: len(procs) > 0}
	row.RSSIdleKiB = sumRSS(procs)
	gc := startGCWatch(procs)
	var fixed *harness.FortioResult
	use, err := during(procs, func() (err error) {
		fixed, err = b.load(name+"-fixed", url, b.o.qps)
		return err
	})
	gc.into(row)
	row.RSSLoadKiB = use.peakKiB
	if err != nil {
		return nil, err
	}
	total, failed := fixed.Counts()
	row.Requests, row.Non200 = total, failed
	if row.Non200 > 0 || total == 0 {
		return nil, fmt.Errorf("%d of %d requests at the fixed rate did not get 200", row.Non200, total)
	}
	row.CPUPer10k = use.cpu / float64(total) * 10000
	row.FixedQPS = fixed.ActualQPS
	row.P50Ms, row.P99Ms, row.P999Ms = fixed.PercentileMs(50), fixed.PercentileMs(99), fixed.PercentileMs(99.9)
	row.MaxMs = fixed.DurationHistogram.Max * 1000
	pr := b.startProfiles(name, procs, b.o.duration)
	max, err := b.load(name+"-max", url, 0)
	if perr := pr.wait(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	if total, failed := max.Counts(); failed > 0 || total == 0 {
		return nil, fmt.Errorf("%d of %d requests at max rate did not get 200", failed, total)
	}
	row.MaxQPS = max.ActualQPS
	return row, nil
}

// selected reports whether -only lets target name run.
func (o options) selected(name string) bool {
	if o.only == "" || name == "direct" {
		return true
	}
	name = strings.TrimSuffix(name, " (baseline)")
	for _, n := range strings.Split(o.only, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}

// load runs fortio on CPU 0 and parses its JSON.
func (b *bench) load(name, url string, qps int) (*harness.FortioResult, error) {
	jsonPath := filepath.Join(b.dir, name+".json")
	argv := b.clientCmd(harness.FortioArgs(b.o.fortio, jsonPath, url, qps, b.o.conns, b.o.duration)...)
	return harness.RunFortio(argv, jsonPath)
}

func (b *bench) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		b.procs[i].stop()
	}
	b.procs = nil
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
