package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/harness"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/netnspair"
)

// kind is the load a target gets.
type kind int

const (
	kindHTTP      kind = iota // fortio, HTTP/1.1 keep-alive
	kindH2                    // h2load, h2c prior knowledge
	kindBulk                  // tcpbulk -bulk: opaque TCP throughput
	kindHandshake             // tcpbulk -connect: new connections
)

func (k kind) String() string {
	return [...]string{"http1", "h2", "bulk", "connect"}[k]
}

// latency reports whether rows of this kind have latency percentiles.
func (k kind) latency() bool { return k == kindHTTP || k == kindH2 }

// skipError is a target that cannot run here (a tool missing, not root):
// its row says why; it is not a failure.
type skipError struct{ err error }

func (e skipError) Error() string { return e.err.Error() }

// runTarget starts t, measures it, checks it and stops it.
func (b *bench) runTarget(t target) (*Row, error) {
	defer b.endTarget()
	url, procs, err := t.start(b)
	if errors.Is(err, errNoBaseline) {
		return nil, err
	}
	if err != nil {
		if errors.Is(err, errNeedsRoot) || strings.Contains(err.Error(), "not installed") {
			return nil, skipError{err}
		}
		return nil, fmt.Errorf("starting: %w", err)
	}
	b.current = procs
	defer func() {
		for _, p := range procs {
			p.stop()
		}
		b.current = nil
	}()
	var row *Row
	switch t.kind {
	case kindH2:
		row, err = b.measureH2(t.name, url, procs)
	case kindBulk:
		row, err = b.measureBulk(t.name, url, procs)
	case kindHandshake:
		row, err = b.measureHandshakes(t.name, url, procs)
	default:
		row, err = b.measure(t.name, url, procs)
	}
	if err == nil && b.verify != nil {
		err = b.verify()
	}
	return row, err
}

// clientCmd is the command line of the load generator: on CPU 0, in the
// client namespace if the target has one.
func (b *bench) clientCmd(args ...string) []string {
	argv := append([]string{"taskset", "-c", "0"}, args...)
	if b.clientNS != "" {
		argv = append([]string{"ip", "netns", "exec", b.clientNS}, argv...)
	}
	return argv
}

// waitURL waits for url to answer 200 from where the load generator runs.
func (b *bench) waitURL(url string, h2 bool) error {
	if b.clientNS == "" {
		return harness.WaitHTTP(url, 15*time.Second)
	}
	deadline := time.Now().Add(15 * time.Second)
	args := []string{"curl", "-sf", "-o", "/dev/null", "--max-time", "2"}
	if h2 {
		args = append(args, "--http2-prior-knowledge")
	}
	for {
		argv := append([]string{"ip", "netns", "exec", b.clientNS}, append(args, url)...)
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering 200 in %s: %v %s", url, b.clientNS, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// usage is the processes' CPU seconds and peak RSS over a phase.
type usage struct {
	cpu, user, sys float64 // CPU seconds: user + system, and each
	peakKiB        int64
}

// during runs f while sampling procs' RSS every 100 ms.
func during(procs []*proc, f func() error) (usage, error) {
	cpu := func() (u, s float64) {
		for _, p := range procs {
			pu, ps := p.cpuTimes()
			u, s = u+pu, s+ps
		}
		return u, s
	}
	stop, peak := make(chan struct{}), make(chan int64, 1)
	go func() {
		var max int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-t.C:
				max = maxInt(max, sumRSS(procs))
			}
		}
	}()
	u0, s0 := cpu()
	err := f()
	u1, s1 := cpu()
	u := usage{user: u1 - u0, sys: s1 - s0}
	u.cpu = u.user + u.sys
	close(stop)
	u.peakKiB = <-peak
	return u, err
}

// gcWatch collects the gctrace pauses the processes log during a phase.
type gcWatch struct {
	procs   []*proc
	offsets []int64
}

func startGCWatch(procs []*proc) *gcWatch {
	w := &gcWatch{}
	for _, p := range procs {
		if p.gcLog == "" {
			continue
		}
		var off int64
		if fi, err := os.Stat(p.gcLog); err == nil {
			off = fi.Size()
		}
		w.procs, w.offsets = append(w.procs, p), append(w.offsets, off)
	}
	return w
}

// into sets row's GC pause columns from what was logged since the start.
func (w *gcWatch) into(row *Row) {
	if len(w.procs) == 0 {
		return
	}
	var pauses []float64
	for i, p := range w.procs {
		f, err := os.Open(p.gcLog)
		if err != nil {
			continue
		}
		f.Seek(w.offsets[i], io.SeekStart)
		pauses = append(pauses, harness.Pauses(harness.ParseGCTrace(f))...)
		f.Close()
	}
	row.GCPauses = len(pauses)
	row.GCPauseP999Us = harness.Percentile(pauses, 99.9)
	row.GCPauseMaxUs = harness.Percentile(pauses, 100)
	row.GCMeasured = true
}

// measureH2 runs h2load at the fixed rate (10 connections, 1 stream each)
// and at max rate (16 connections × 10 streams).
func (b *bench) measureH2(name, url string, procs []*proc) (*Row, error) {
	h2load, err := exec.LookPath("h2load")
	if err != nil {
		return nil, skipError{errors.New("h2load not installed (apt-get install nghttp2-client)")}
	}
	if err := b.waitURL(url, true); err != nil {
		return nil, err
	}
	row := &Row{Target: name, HasProcesses: len(procs) > 0}
	row.RSSIdleKiB = sumRSS(procs)
	const clients = 10
	logPath := filepath.Join(b.dir, fileName(name)+"-h2.log")
	var fixed *h2Result
	gc := startGCWatch(procs)
	u, err := during(procs, func() (err error) {
		fixed, err = b.h2load(h2load, "-c", strconv.Itoa(clients), "--rps", strconv.Itoa(max(1, b.o.qps/clients)),
			"-D", b.o.duration.String(), "--log-file", logPath, url)
		return err
	})
	gc.into(row)
	if err != nil {
		return nil, err
	}
	lat, non200, err := h2LogLatencies(logPath)
	if err != nil {
		return nil, err
	}
	if fixed.succeeded == 0 || fixed.failed > 0 || non200 > 0 {
		return nil, fmt.Errorf("h2load at the fixed rate: %d succeeded, %d failed, %d not 200", fixed.succeeded, fixed.failed, non200)
	}
	row.Requests, row.FixedQPS, row.RSSLoadKiB = fixed.succeeded, fixed.rps, u.peakKiB
	row.CPUPer10k = u.cpu / float64(fixed.succeeded) * 10000
	row.P50Ms, row.P99Ms, row.P999Ms, row.MaxMs = harness.Percentile(lat, 50), harness.Percentile(lat, 99), harness.Percentile(lat, 99.9), harness.Percentile(lat, 100)
	pr := b.startProfiles(name, procs, b.o.duration)
	max, err := b.h2load(h2load, "-c", "16", "-m", "10", "-D", b.o.duration.String(), url)
	if perr := pr.wait(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	if max.succeeded == 0 || max.failed > 0 || max.non2xx > 0 {
		return nil, fmt.Errorf("h2load at max rate: %d succeeded, %d failed, %d not 2xx", max.succeeded, max.failed, max.non2xx)
	}
	row.MaxQPS = max.rps
	return row, nil
}

type h2Result struct {
	rps                       float64
	succeeded, failed, non2xx int64
}

var (
	h2Finished = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Codes    = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// parseH2load reads h2load's summary.
func parseH2load(out string) (*h2Result, error) {
	f, q, c := h2Finished.FindStringSubmatch(out), h2Requests.FindStringSubmatch(out), h2Codes.FindStringSubmatch(out)
	if f == nil || q == nil || c == nil {
		return nil, fmt.Errorf("h2load: no summary in its output: %s", out)
	}
	r := &h2Result{}
	r.rps, _ = strconv.ParseFloat(f[1], 64)
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	r.succeeded, r.failed = n(q[1]), n(q[2])+n(q[3])+n(q[4])
	r.non2xx = n(c[2]) + n(c[3]) + n(c[4])
	return r, nil
}

func (b *bench) h2load(bin string, args ...string) (*h2Result, error) {
	argv := b.clientCmd(append([]string{bin}, args...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("h2load: %v: %s", err, out)
	}
	return parseH2load(string(out))
}

// h2LogLatencies reads h2load's --log-file (start µs, status, duration µs)
// and returns the latencies in ms and how many were not 200.
func h2LogLatencies(path string) ([]float64, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var lat []float64
	var non200 int64
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Split(s.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		if f[1] != "200" {
			non200++
			continue
		}
		us, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		lat = append(lat, us/1000)
	}
	return lat, non200, nil
}

// bulkBytes is how much the opaque rows move: 1 GiB, 64 MiB with -quick.
func (b *bench) bulkBytes() int64 {
	if b.o.quick {
		return 64 << 20
	}
	return 1 << 30
}

// measureBulk moves bulkBytes over 4 connections to addr (host:port).
func (b *bench) measureBulk(name, addr string, procs []*proc) (*Row, error) {
	if err := b.waitTCP(addr); err != nil {
		return nil, err
	}
	row := &Row{Target: name, HasProcesses: len(procs) > 0}
	var res struct {
		Bytes       int64
		Seconds     float64
		UserSeconds float64 `json:"user_seconds"`
		SysSeconds  float64 `json:"sys_seconds"`
	}
	// The endpoints' CPU (tcpbulk's client and, in the namespace rows, its
	// server), logged per GiB: what the transfer costs without proxies.
	var su0, ss0 float64
	if b.nsBulk != nil {
		su0, ss0 = b.nsBulk.cpuTimes()
	}
	// -profile: the proxies' CPU during the transfer (3 s; a 1 GiB
	// transfer at a few hundred MiB/s lasts about that long).
	pr := b.startProfiles(name, procs, 4*time.Second)
	u, err := during(procs, func() error {
		return b.tcpbulk(&res, "-bulk", addr, "-bytes", strconv.FormatInt(b.bulkBytes(), 10), "-c", "4")
	})
	if perr := pr.wait(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	want := b.bulkBytes() / 4 * 4
	if res.Bytes != want || res.Seconds <= 0 {
		return nil, fmt.Errorf("moved %d of %d bytes", res.Bytes, want)
	}
	eu, es := res.UserSeconds, res.SysSeconds
	if b.nsBulk != nil {
		su1, ss1 := b.nsBulk.cpuTimes()
		eu, es = eu+su1-su0, es+ss1-ss0
	}
	gib := float64(res.Bytes) / (1 << 30)
	log.Printf("%s: endpoints (tcpbulk client and server) %.2f CPU s per GiB (user %.2f, sys %.2f); proxies %.2f (user %.2f, sys %.2f)",
		name, (eu+es)/gib, eu/gib, es/gib, u.cpu/gib, u.user/gib, u.sys/gib)
	row.BulkBytes, row.BulkMiBps, row.CPUSeconds, row.RSSLoadKiB = res.Bytes, float64(res.Bytes)/(1<<20)/res.Seconds, u.cpu, u.peakKiB
	row.CPUUserSeconds, row.CPUSysSeconds = u.user, u.sys
	return row, nil
}

// measureHandshakes opens new connections to addr (an opaque port through
// the mTLS pair: one handshake between the proxies each) for the phase.
func (b *bench) measureHandshakes(name, addr string, procs []*proc) (*Row, error) {
	if err := b.waitTCP(addr); err != nil {
		return nil, err
	}
	row := &Row{Target: name, HasProcesses: len(procs) > 0}
	var res struct {
		Conns, Errors int64
		Seconds       float64
		Error         string `json:"first_error"`
	}
	pr := b.startProfiles(name, procs, b.o.duration)
	u, err := during(procs, func() error {
		return b.tcpbulk(&res, "-connect", addr, "-c", "8", "-d", b.o.duration.String(), "-max", "2000000")
	})
	if perr := pr.wait(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	if res.Errors > 0 || res.Conns == 0 {
		return nil, fmt.Errorf("%d connections, %d failed (first: %s)", res.Conns, res.Errors, res.Error)
	}
	row.Conns, row.ConnsPerSec, row.CPUSeconds, row.RSSLoadKiB = res.Conns, float64(res.Conns)/res.Seconds, u.cpu, u.peakKiB
	if u.cpu > 0 {
		row.HandshakesPerCPUSec = float64(res.Conns) / u.cpu
	}
	for _, p := range procs {
		if full, resumed, ok := meshHandshakes(p); ok {
			log.Printf("%s: %s: %d mTLS handshakes with peers, %d resumed (%.0f %%)", name, p.name, full+resumed, resumed, 100*float64(resumed)/float64(max(full+resumed, 1)))
		}
	}
	return row, nil
}

// meshHandshakes reads a namespaced weft-proxy's identity_mesh_tls_handshakes_total
// (both sides) from its admin port; ok is false when it has none.
func meshHandshakes(p *proc) (full, resumed int64, ok bool) {
	if p.ns == "" {
		return 0, 0, false
	}
	out, err := netnspair.Run(p.ns, "curl", "-sf", "--max-time", "5", fmt.Sprintf("http://127.0.0.1:%d/metrics", compat.AdminPort))
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "identity_mesh_tls_handshakes_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		ok = true
		if strings.Contains(line, `resumed="true"`) {
			resumed += int64(v)
		} else {
			full += int64(v)
		}
	}
	return full, resumed, ok
}

// waitTCP waits until one echo through addr succeeds.
func (b *bench) waitTCP(addr string) error {
	var res struct{ Conns, Errors int64 }
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := b.tcpbulk(&res, "-connect", addr, "-c", "1", "-max", "1", "-d", "5s")
		if err == nil && res.Conns == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering: %v (%d errors)", addr, err, res.Errors)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tcpbulk runs bench/tcpbulk as the load generator and decodes its JSON.
func (b *bench) tcpbulk(into any, args ...string) error {
	argv := b.clientCmd(append([]string{filepath.Join(b.bin, "tcpbulk")}, args...)...)
	var stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("tcpbulk %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return json.Unmarshal(out, into)
}

func sumRSS(procs []*proc) (n int64) {
	for _, p := range procs {
		n += p.rssKiB()
	}
	return n
}
