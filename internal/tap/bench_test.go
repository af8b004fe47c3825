package tap_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
	"github.com/weftmesh/weft/internal/proxy"
	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/tap/taptest"
)

// BenchmarkProxyRequest sends requests through a real meshed proxy's
// inbound side on loopback, without a tap and with one that sees every
// request (read by a client over mTLS as fast as it can).
func BenchmarkProxyRequest(b *testing.B) {
	m := taptest.NewMesh(b)
	server := taptest.StartProxy(b, m.Identity(b, taptest.APIID), func(c *proxy.Config) { c.InboundForward = taptest.Backend(b, "ok") })
	tapper := m.Identity(b, taptest.TapID)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(b *testing.B) {
		resp, err := hc.Get("http://" + server.Inbound + "/bench")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.Run("untapped", func(b *testing.B) {
		for range b.N {
			get(b)
		}
	})
	for _, tc := range []struct {
		name  string
		match *tapv1.Match
	}{
		{"tapped-no-match", &tapv1.Match{Method: "DELETE"}},
		{"tapped-every-request", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc2, closeConn, err := tap.Dial(server.Control, tapper.ClientConfig(taptest.APIID))
			if err != nil {
				b.Fatal(err)
			}
			defer closeConn()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := tc2.Watch(ctx, &tapv1.WatchRequest{Match: tc.match, MaxRps: 1e9})
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				for {
					if _, err := s.Recv(); err != nil {
						return
					}
				}
			}()
			for metric(b, server.Admin, tap.MetricWatches) != 1 {
			}
			b.ResetTimer()
			for range b.N {
				get(b)
			}
			b.StopTimer()
			b.ReportMetric(metric(b, server.Admin, tap.MetricEventsDropped), "dropped")
			cancel()
			for metric(b, server.Admin, tap.MetricWatches) != 0 {
			}
		})
	}
}
