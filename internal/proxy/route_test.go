package proxy

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/target"
)

// routedResolver is an in-process stand-in for the destination service's
// client: one target, one endpoint, and a profile with routes.
type routedResolver struct {
	target  string
	pool    *balance.Pool
	profile *target.Profile
}

func (r *routedResolver) Resolve(dst string) (target.Destination, error) {
	if dst != r.target {
		return target.Destination{Pool: r.pool}, nil
	}
	return target.Destination{Pool: r.pool, Profile: r.profile}, nil
}

// exact is a route matching one method and path.
func exact(method, path string, rt target.Route) target.Route {
	rt.Name, rt.Method, rt.Path = method+" "+path, method, regexp.MustCompile("^"+regexp.QuoteMeta(path)+"$")
	return rt
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
	pool.Update([]*balance.Endpoint{balance.NewEndpoint(backend, 1, balance.Peer{})})
	res := &routedResolver{target: "flaky.test:80", pool: pool, profile: &target.Profile{Routes: []target.Route{
		exact("GET", "/vote", target.Route{Retryable: true}),
		exact("GET", "/other", target.Route{}),
		exact("GET", "/slow", target.Route{Timeout: 200 * time.Millisecond}),
	}}}
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
