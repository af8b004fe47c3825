package tap

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
)

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkHook measures what the proxy's hook costs per request: idle
// (no watch: one atomic load), a watch that matches nothing, and a watch
// that sees every request (four events, drained by a reader).
func BenchmarkHook(b *testing.B) {
	handler := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200); w.Write([]byte("ok")) }
	for _, tc := range []struct {
		name  string
		match *tapv1.Match
		open  bool
	}{
		{"idle", nil, false},
		{"watch-no-match", &tapv1.Match{Method: "DELETE"}, true},
		{"watch-every-request", nil, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			t, err := New(Config{Authorized: "tap", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			if tc.open {
				w := newWatch(&tapv1.WatchRequest{Match: tc.match, MaxRps: 1e12}, DefaultQueue)
				t.add(w)
				done := make(chan struct{})
				defer close(done)
				go func() {
					for {
						select {
						case <-w.ch:
						case <-done:
							return
						}
					}
				}()
			}
			r := httptest.NewRequest("GET", "http://api.shop/hello?q=1", nil)
			r.Header.Set("Accept", "*/*")
			dw := &discardWriter{h: http.Header{}}
			m := Meta{Inbound: true, Source: "198.18.0.1:4000", Destination: "198.18.0.2:80", TLS: true, ClientID: "web"}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if !t.Active() {
					handler(dw, r)
					continue
				}
				w, r2, end := t.Begin(dw, r, m)
				handler(w, r2)
				end()
			}
			b.ReportMetric(counterValue(t.dropped), "dropped")
		})
	}
}
