package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/discovery"
)

// everyTarget is a destination backend that knows every target: each is
// served by one endpoint. It counts live subscriptions, so a test sees the
// control plane's side of a watch released too.
type everyTarget struct {
	addr string
	subs atomic.Int64
}

func (b *everyTarget) Subscribe(_ string, update func(destination.Snapshot)) (func(), error) {
	b.subs.Add(1)
	update(destination.Snapshot{Exists: true, Endpoints: []destination.Endpoint{{Addr: b.addr}},
		Labels: map[string]string{"dst_namespace": "scale"}})
	var once sync.Once
	return func() { once.Do(func() { b.subs.Add(-1) }) }, nil
}

func (b *everyTarget) Profile(string) (destination.Profile, error) { return destination.Profile{}, nil }

// TestDistinctDestinationsReleased: 10,000 distinct destinations through
// one proxy with the destination service behind it, then idle: every watch
// is stopped (on both sides of the stream) and the goroutines return to
// their baseline. A second round of 10,000 other destinations leaves the
// proxy no bigger than the first did: memory is bounded, not growing with
// the destinations it has met. (Go keeps a goroutine's descriptor, about
// 1 KiB, after it exits, so the resident size after the first round stays
// a little above the baseline; the race detector's shadow memory is never
// returned, so under -race the rounds are smaller and RSS is only logged.)
func TestDistinctDestinationsReleased(t *testing.T) {
	n, rounds := 10000, 2
	if raceEnabled || testing.Short() {
		n, rounds = 1000, 1
	}
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	be := &everyTarget{addr: backend}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, destination.NewServer(be, quiet))
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const idle = 2 * time.Second
	res := discovery.New(ctx, destinationv1.NewDestinationClient(conn), discovery.Options{Log: quiet, IdleTimeout: idle})
	p := startProxyWith(t, Options{Discovery: res}, func(c *Config) {
		c.IngressMode, c.DestinationAddr, c.MetricsIdleTimeout = true, l.Addr().String(), idle
	})

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	get := func(dst string) error {
		req, _ := http.NewRequest("GET", "http://"+p.outbound+"/", nil)
		req.Header.Set(compat.HeaderDstOverride, dst)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: status %d", dst, resp.StatusCode)
		}
		return nil
	}
	// idleOut waits for every watch to end, then drops pooled connections
	// (client → proxy → backend), which are not the watches' doing.
	idleOut := func() (int, uint64) {
		settle(t, func() bool { return res.Watches() == 0 && be.subs.Load() == 0 }, 5*idle)
		client.CloseIdleConnections()
		p.h1.CloseIdleConnections()
		p.h1d.CloseIdleConnections()
		p.h2.CloseIdleConnections()
		time.Sleep(100 * time.Millisecond)
		return footprint()
	}
	if err := get("warmup.scale.svc.cluster.local:80"); err != nil {
		t.Fatal(err)
	}
	baseG, baseRSS := idleOut()
	t.Logf("baseline: %d goroutines, RSS %.1f MiB", baseG, mib(baseRSS))

	var afterRSS []uint64
	var peakGs []int64
	for round := 0; round < rounds; round++ {
		start := time.Now()
		var failed, peak, peakG atomic.Int64
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					dst := fmt.Sprintf("svc-%d-%d.scale.svc.cluster.local:80", round, i)
					if err := get(dst); err != nil && failed.Add(1) < 5 {
						t.Error(err)
					}
					if i%100 == 0 {
						peak.Store(max(peak.Load(), int64(res.Watches())))
						peakG.Store(max(peakG.Load(), int64(runtime.NumGoroutine())))
					}
				}
			}()
		}
		wg.Wait()
		busyG, busyRSS := footprint()
		t.Logf("round %d: %d destinations in %v (%d failed); peak %d watches, %d goroutines; after: %d goroutines, RSS %.1f MiB",
			round+1, n, time.Since(start).Round(time.Millisecond), failed.Load(), peak.Load(), peakG.Load(), busyG, mib(busyRSS))
		if failed.Load() > 0 {
			t.Fatalf("%d requests failed", failed.Load())
		}
		if peak.Load() < 100 {
			t.Fatalf("peak of %d watches: the destinations were not discovered", peak.Load())
		}
		var g int
		var rss uint64
		settle(t, func() bool { g, rss = idleOut(); return g <= baseG+2 }, 10*time.Second)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("round %d, idle: %d goroutines (baseline %d), RSS %.1f MiB (baseline %.1f), heap in use %.1f MiB, %d objects",
			round+1, g, baseG, mib(rss), mib(baseRSS), mib(ms.HeapInuse), ms.HeapObjects)
		afterRSS = append(afterRSS, rss)
		peakGs = append(peakGs, peakG.Load())
	}
	if rounds == 2 {
		// Go keeps every goroutine's descriptor after it exits (measured
		// ~1 KiB each), so what stays above the baseline follows the peak
		// number of goroutines (client and server streams, in this one
		// process), not the number of destinations met: allow 2 KiB per
		// peak goroutine. Seen: baseline 18 MiB; 145-296 MiB busy; 41-52 MiB
		// idle after each of four rounds, heap 18-25 MiB.
		kept := func(peak int64) int64 { return peak * 2 << 10 }
		if grew := int64(afterRSS[1]) - int64(afterRSS[0]); grew > 8<<20+kept(max(0, peakGs[1]-peakGs[0])) {
			t.Errorf("RSS grew by %.1f MiB over a second round of %d destinations (peak goroutines %d then %d): not bounded",
				float64(grew)/(1<<20), n, peakGs[0], peakGs[1])
		}
		if limit := int64(baseRSS) + 16<<20 + kept(max(peakGs[0], peakGs[1])); int64(afterRSS[0]) > limit {
			t.Errorf("RSS after idle %.1f MiB, baseline %.1f MiB, limit %.1f MiB for a peak of %d goroutines",
				mib(afterRSS[0]), mib(baseRSS), mib(uint64(limit)), max(peakGs[0], peakGs[1]))
		}
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// settle waits until cond holds, failing after limit.
func settle(t *testing.T, cond func() bool, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			g, rss := footprint()
			t.Fatalf("not settled within %v (now %d goroutines, RSS %.1f MiB)", limit, g, mib(rss))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// footprint is the goroutine count and resident memory after a GC that
// returns freed memory to the system.
func footprint() (int, uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	b, _ := os.ReadFile("/proc/self/status")
	var rss uint64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return runtime.NumGoroutine(), rss
}
