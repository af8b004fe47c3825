package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/balance"
)

// routedResolver is an in-process stand-in for the destination service's
// client: one target, one endpoint, and routes.
type routedResolver struct {
	target string
	pool   *balance.Pool
	routes map[string]Route // "METHOD path" → route
}

func (r *routedResolver) Resolve(dst string) (*balance.Pool, error) { return r.pool, nil }
func (r *routedResolver) Route(dst, method, path string) (Route, bool) {
	if dst != r.target {
		return Route{}, false
	}
	rt, ok := r.routes[method+" "+path]
	return rt, ok
}

// TestRetryableRouteRetriesFailedResponses: a route marked retryable has
// its 5xx answers retried within the budget; other routes pass failures
// through; a route's timeout bounds the request.
func TestRetryableRouteRetriesFailedResponses(t *testing.T) {
	var n atomic.Int64
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
		if n.Add(1)%2 == 0 { // every other request fails
			http.Error(w, "flaky", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}))
	pool := balance.NewPool(balance.NewP2CPeakEWMA())
	pool.Update([]*balance.Endpoint{balance.NewEndpoint(backend, 1, nil)})
	res := &routedResolver{target: "flaky.test:80", pool: pool, routes: map[string]Route{
		"GET /vote":  {Name: "GET /vote", Retryable: true},
		"GET /other": {Name: "GET /other"},
		"GET /slow":  {Name: "GET /slow", Timeout: 200 * time.Millisecond},
	}}
	// The address only satisfies validation: Options.Discovery answers.
	tp := startProxyWith(t, Options{Discovery: res}, func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, "flaky.test:80")
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) int {
		resp, err := client.Get("http://" + tp.bindings[0] + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 20 {
		if code := get("/vote"); code != 200 {
			t.Fatalf("retryable GET %d: %d, want 200 after a retry", i, code)
		}
	}
	failures := 0
	for range 20 {
		if get("/other") == 500 {
			failures++
		}
	}
	if failures < 5 {
		t.Errorf("%d of 20 non-retryable requests failed, want about half passed through", failures)
	}
	m := tp.metricsText(t)
	if !strings.Contains(m, `request_retry_total{direction="outbound",dst="flaky.test:80"}`) {
		t.Errorf("no retry counted:\n%s", grep(m, "retry"))
	}
	start := time.Now()
	if code := get("/slow"); code != http.StatusGatewayTimeout && code != http.StatusServiceUnavailable {
		t.Errorf("route with a 200ms timeout: %d", code)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("route timeout took %v", d)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
