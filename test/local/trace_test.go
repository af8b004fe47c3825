package local

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/serving"
	"github.com/weftmesh/weft/internal/trace/tracetest"
)

var long = flag.Bool("long", false, "run load tests at full length (TestTraceCollectorDownBinary: 60 s per collector)")

// TestTraceCollectorDownBinary is issue 19's proof on the real weft-proxy
// binary: tracing points at a collector that is down, (a) an address that
// refuses connections and (b) a TCP server that accepts and never answers,
// while 200 sampled requests a second go through the proxy to a loopback
// backend. No request may fail, the proxy's RSS (VmRSS, sampled every 5 s,
// every second in the short run) must stay within 15 MiB of the first
// sample and, from 15 s on (the long run), not climb at every sample, and
// trace_spans_dropped_total must rise. Each collector is down for 10 s by
// default, 60 s with -long.
func TestTraceCollectorDownBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the proxy and runs a load")
	}
	d, interval := 10*time.Second, time.Second
	if *long {
		d, interval = 60*time.Second, 5*time.Second
	}
	bin := proctest.Build(t, "../..", "./cmd/weft-proxy")
	backend := httpBackend(t)
	for _, tc := range []struct {
		name      string
		collector func(t *testing.T) string
	}{
		{"refused", refusingAddr},
		{"accepts but never answers", silentServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"LINKERD2_PROXY_TRACE_COLLECTOR_SVC_ADDR=" + tc.collector(t), "LINKERD2_PROXY_IDENTITY_DISABLED=1"}
			addrFile := filepath.Join(t.TempDir(), "addrs.json")
			p := proctest.Start(t, "proxy", env, bin+"/weft-proxy",
				"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0",
				"--dst", "app.shop:80="+backend, "--bind", "127.0.0.1:0=app.shop:80", "--addr-file", addrFile)
			addrs, err := serving.ReadAddrFile(addrFile, 30*time.Second, p.Exited)
			if err != nil {
				t.Fatal(err)
			}
			admin, pid := addrs["admin"], p.Cmd.Process.Pid
			proctest.WaitReady(t, "http://"+admin+"/ready", 20*time.Second)
			r := runSampledLoad(t, "http://"+addrs["bind app.shop:80"]+"/", 200, d, interval, pid)
			t.Logf("%d requests in %v (%.0f/s), %d failed; RSS KiB every %v: %v", r.sent, r.elapsed.Round(time.Millisecond),
				float64(r.sent)/r.elapsed.Seconds(), r.failed, interval, r.rss)
			if r.failed != 0 {
				t.Errorf("%d of %d sampled requests failed with the collector down", r.failed, r.sent)
			}
			checkRSSBounded(t, r.rss, int(15*time.Second/interval), 15<<10)
			// The first export fails only after its timeout (5 s) when the
			// collector never answers: wait for the count, bounded.
			var dropped, exported float64
			deadline := time.Now().Add(20 * time.Second)
			for {
				dropped, exported = metric(t, admin, "trace_spans_dropped_total"), metric(t, admin, "trace_spans_exported_total")
				if dropped > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Logf("trace_spans_dropped_total %v, trace_spans_exported_total %v", dropped, exported)
			if dropped == 0 {
				t.Errorf("trace_spans_dropped_total did not rise after %d sampled requests with the collector down", r.sent)
			}
			if exported != 0 {
				t.Errorf("trace_spans_exported_total = %v with the collector down", exported)
			}
		})
	}
}

// checkRSSBounded fails when a sample exceeds the first by more than
// maxGrowthKiB, or when RSS keeps climbing once the proxy is in its steady
// state: from settled on (the samples before include the warm-up:
// connections, goroutines, and the export queue of 2048 spans filling,
// which at 200 spans/s with a collector that never answers takes ~10 s
// plus the 5 s export timeout), it rose at every sample and by more than
// 1 MiB in all.
func checkRSSBounded(t *testing.T, rss []int64, settled int, maxGrowthKiB int64) {
	t.Helper()
	if len(rss) < 2 {
		t.Fatalf("only %d RSS samples", len(rss))
	}
	for i, v := range rss[1:] {
		if v > rss[0]+maxGrowthKiB {
			t.Errorf("RSS sample %d is %d KiB, more than %d KiB above the first (%d KiB)", i+1, v, maxGrowthKiB, rss[0])
		}
	}
	if settled < len(rss) && climbing(rss[settled:], 1<<10) {
		t.Errorf("RSS rose at every sample from sample %d on: %v KiB", settled, rss)
	}
}

// climbing reports whether samples (at least 3) rose at every step and by
// more than minKiB in all.
func climbing(samples []int64, minKiB int64) bool {
	if len(samples) < 3 {
		return false
	}
	for i := 1; i < len(samples); i++ {
		if samples[i] <= samples[i-1] {
			return false
		}
	}
	return samples[len(samples)-1]-samples[0] > minKiB
}

type loadResult struct {
	sent, failed int64
	elapsed      time.Duration
	rss          []int64 // KiB, at the start and every interval
}

// runSampledLoad sends rps requests a second for d (rps*d requests at
// most), each with a sampled W3C traceparent, and samples pid's VmRSS at
// the start and every interval.
func runSampledLoad(t *testing.T, url string, rps int, d, interval time.Duration, pid int) loadResult {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	var res loadResult
	var failed atomic.Int64
	var wg sync.WaitGroup
	res.rss = append(res.rss, vmRSS(t, pid))
	n := int(int64(rps) * int64(d) / int64(time.Second))
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	start, nextSample := time.Now(), time.Now().Add(interval)
	for i := 0; i < n; i++ {
		<-tick.C
		if time.Now().After(nextSample) {
			res.rss = append(res.rss, vmRSS(t, pid))
			nextSample = nextSample.Add(interval)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("traceparent", fmt.Sprintf("00-4bf92f3577b34da6a3ce929d0e0e%04x-%016x-01", i%0xffff, i+1))
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				failed.Add(1)
			}
		}()
		res.sent++
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if time.Since(start) >= d-interval/2 || len(res.rss) < 2 {
		res.rss = append(res.rss, vmRSS(t, pid))
	}
	res.failed = failed.Load()
	return res
}

// vmRSS reads VmRSS (KiB) from /proc/<pid>/status.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the proxy's memory: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// httpBackend is the loopback application: it answers "ok".
func httpBackend(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// refusingAddr is a loopback address nothing listens on: a listener
// bound and closed.
func refusingAddr(t *testing.T) string {
	return proctest.FreeAddr(t)
}

// silentServer accepts connections and never writes or closes them until
// the test ends.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestClimbing(t *testing.T) {
	for _, tc := range []struct {
		samples []int64
		want    bool
	}{
		{[]int64{100, 2000, 4000}, true},
		{[]int64{100, 2000, 2000, 4000}, false},
		{[]int64{100, 200, 300, 400}, false}, // rising by less than 1 MiB
		{[]int64{100, 5000}, false},          // too few samples
		{[]int64{5000, 4000, 3000}, false},
	} {
		if got := climbing(tc.samples, 1<<10); got != tc.want {
			t.Errorf("climbing(%v) = %v, want %v", tc.samples, got, tc.want)
		}
	}
}

// TestIdentityControllerTracing: the real identity controller started
// with --trace-collector exports a server span for the Certify call a
// real proxy makes at start-up, to an in-process OTLP receiver.
func TestIdentityControllerTracing(t *testing.T) {
	m := newMesh(t)
	col := tracetest.OTLP(t, nil)
	id := proctest.StartListening(t, "identity-traced", nil, m.bin+"/weft-controller", "identity", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--identity-trust-anchors-file", m.dir+"/ca.crt", "--static-tokens", m.dir+"/tokens", "--issuer-cert", m.dir+"/issuer.crt", "--issuer-key", m.dir+"/issuer.key",
		"--trace-collector", col.Addr)
	proctest.WaitReady(t, "http://"+id["identity admin server"]+"/ready", 20*time.Second)
	m.idAddr = id["identity gRPC server"]
	p := m.startProxy(t, "web", nil)
	proctest.WaitReady(t, "http://"+p["admin"]+"/ready", 20*time.Second) // ready once certified
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range col.Spans() {
			if s.Name == "weft.identity.v1.Identity/Certify" && s.Kind == "server" && s.Service == "linkerd-identity" && s.Attrs["rpc.response.status_code"] == "OK" {
				t.Logf("span: %v", s)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server span weft.identity.v1.Identity/Certify from linkerd-identity within 10 s; got %v", col.Spans())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
