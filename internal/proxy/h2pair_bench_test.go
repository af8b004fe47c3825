package proxy

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkH2Pair sends HTTP/2 (h2c) requests, 16 streams in flight per
// processor, through a proxy pair (binding → outbound proxy → inbound proxy
// → backend) on loopback, the proxies serving HTTP/2 with their own server
// (server=weft) or net/http's (server=net-http). The client and the
// backend are net/http's, in the same process, so cpu-µs/req and
// mallocs/req include theirs: compare numbers side by side, not the
// absolute values:
//
//	go test -run '^$' -bench H2Pair -benchmem ./internal/proxy/
func BenchmarkH2Pair(b *testing.B) {
	for _, netHTTP := range []bool{false, true} {
		name := "server=weft"
		if netHTTP {
			name = "server=net-http"
		}
		b.Run(name, func(b *testing.B) { benchH2Pair(b, netHTTP) })
	}
}

func benchH2Pair(b *testing.B, netHTTP bool) {
	const size = 1024
	body := bytes.Repeat([]byte("x"), size)
	backend := h2cServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	addr, _, _ := pairWith(b, backend, func(c *Config) { c.NetHTTP2Server = netHTTP })
	client := h2cClient()
	url := "http://" + addr + "/echo"
	one := func() error {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return err
		}
		req.Host = "web.test"
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil && (resp.StatusCode != http.StatusOK || n != size) {
			b.Errorf("response: %s, %d bytes", resp.Status, n)
		}
		return err
	}
	for range 100 {
		if err := one(); err != nil { // warm the pools and connections
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := processCPU(b)
	var n atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := one(); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	cpu := processCPU(b) - cpu0
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(cpu.Microseconds())/float64(n.Load()), "cpu-µs/req")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n.Load()), "mallocs/req")
}
