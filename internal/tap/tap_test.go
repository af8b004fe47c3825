package tap_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
	"github.com/weftmesh/weft/internal/promtext"
	"github.com/weftmesh/weft/internal/proxy"
	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/tap/taptest"
)

// collect reads events until n request ends arrived or the time is up.
func collect(t *testing.T, stream tapv1.Tap_WatchClient, ends int, within time.Duration) []*tapv1.Event {
	t.Helper()
	var mu sync.Mutex
	var got []*tapv1.Event
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := 0
		for seen < ends {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
			if ev.GetResponseEnd() != nil {
				seen++
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(within):
		t.Errorf("only some events arrived within %v", within)
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]*tapv1.Event(nil), got...)
}

// waitActive waits until the proxy's tap has n watches (the Watch call is
// registered asynchronously).
func waitWatches(t *testing.T, admin string, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := metric(t, admin, tap.MetricWatches); got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %v", tap.MetricWatches, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metric(t testing.TB, admin, name string) float64 {
	t.Helper()
	v, err := promtext.SumAt(context.Background(), "http://"+admin+"/metrics", name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTapStreamsRequestsOverMTLS(t *testing.T) {
	m := taptest.NewMesh(t)
	tapper := m.Identity(t, taptest.TapID)
	server := taptest.StartProxy(t, m.Identity(t, taptest.APIID), func(c *proxy.Config) { c.InboundForward = taptest.Backend(t, "hello from api") })
	client := taptest.StartProxy(t, m.Identity(t, taptest.WebID), func(c *proxy.Config) {
		c.Destinations = map[string][]proxy.EndpointSpec{"api.shop:80": {{Addr: server.Inbound, Proxy: true, Identity: taptest.APIID}}}
	}, "api.shop:80")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(p *taptest.Proxy, proxyID string, match *tapv1.Match) tapv1.Tap_WatchClient {
		tc, closeConn, err := tap.Dial(p.Control, tapper.ClientConfig(proxyID))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeConn() })
		s, err := tc.Watch(ctx, &tapv1.WatchRequest{Match: match, MaxRps: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	in := open(server, taptest.APIID, &tapv1.Match{PathPrefix: "/hello"})
	out := open(client, taptest.WebID, nil)
	none := open(server, taptest.APIID, &tapv1.Match{Method: "DELETE"})
	waitWatches(t, server.Admin, 2)
	waitWatches(t, client.Admin, 1)

	const n = 3
	for i := range n {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/hello/%d?q=1", client.Bindings[0], i), nil)
		req.Host = "api.shop:80"
		req.Header.Set("X-Secret", "secret-header-value")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, tc := range []struct {
		name      string
		stream    tapv1.Tap_WatchClient
		direction string
		check     func(ev *tapv1.Event) error
	}{
		{"server inbound", in, "inbound", func(ev *tapv1.Event) error {
			if !ev.Tls || ev.ClientId != taptest.WebID {
				return fmt.Errorf("tls=%v client_id=%q, want true %q", ev.Tls, ev.ClientId, taptest.WebID)
			}
			return nil
		}},
		{"client outbound", out, "outbound", func(ev *tapv1.Event) error {
			if !ev.Tls || ev.ServerId != taptest.APIID || ev.Destination != server.Inbound {
				return fmt.Errorf("tls=%v server_id=%q dst=%q, want true %q %q", ev.Tls, ev.ServerId, ev.Destination, taptest.APIID, server.Inbound)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := collect(t, tc.stream, n, 5*time.Second)
			inits, rsps, ends := 0, 0, 0
			for _, ev := range evs {
				if ev.Direction != tc.direction {
					t.Errorf("direction %q, want %q", ev.Direction, tc.direction)
				}
				if err := tc.check(ev); err != nil {
					t.Errorf("event %d: %v", ev.Id, err)
				}
				if strings.Contains(ev.String(), "secret-") {
					t.Errorf("event shows a header value: %v", ev)
				}
				switch k := ev.Kind.(type) {
				case *tapv1.Event_RequestInit:
					inits++
					ri := k.RequestInit
					if want := fmt.Sprintf("/hello/%d?q=1", ev.Id-1); ri.Method != "GET" || ri.Path != want || ri.Authority != "api.shop:80" {
						t.Errorf("request init %v, want GET api.shop:80 %s", ri, want)
					}
					if !contains(ri.HeaderNames, "x-secret") {
						t.Errorf("header names %v lack x-secret", ri.HeaderNames)
					}
				case *tapv1.Event_ResponseInit:
					rsps++
					if k.ResponseInit.HttpStatus != 200 || k.ResponseInit.SinceRequestInitNs <= 0 {
						t.Errorf("response init %v, want 200 after a positive latency", k.ResponseInit)
					}
					if !contains(k.ResponseInit.HeaderNames, "x-answer") {
						t.Errorf("response header names %v lack x-answer", k.ResponseInit.HeaderNames)
					}
				case *tapv1.Event_ResponseEnd:
					ends++
					if e := k.ResponseEnd; e.ResponseBytes != uint64(len("hello from api")) || e.Error != "" || e.SinceRequestInitNs <= 0 {
						t.Errorf("response end %v, want %d bytes, no error", e, len("hello from api"))
					}
				}
			}
			if inits != n || rsps != n || ends != n {
				t.Errorf("got %d request inits, %d response inits, %d ends; want %d each", inits, rsps, ends, n)
			}
		})
	}
	// The DELETE-only watch saw nothing.
	cancelNone := make(chan struct{})
	go func() {
		select {
		case <-time.After(300 * time.Millisecond):
			cancel()
		case <-cancelNone:
		}
	}()
	if ev, err := none.Recv(); err == nil {
		t.Errorf("a watch matching DELETE got %v", ev)
	}
	close(cancelNone)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestTapRefusesOtherIdentities(t *testing.T) {
	m := taptest.NewMesh(t)
	server := taptest.StartProxy(t, m.Identity(t, taptest.APIID), func(c *proxy.Config) { c.InboundForward = taptest.Backend(t, "x") })
	for _, id := range []string{taptest.OtherID, taptest.WebID} {
		t.Run(id, func(t *testing.T) {
			tc, closeConn, err := tap.Dial(server.Control, m.Identity(t, id).ClientConfig(taptest.APIID))
			if err != nil {
				t.Fatal(err)
			}
			defer closeConn()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := tc.Watch(ctx, &tapv1.WatchRequest{})
			if err == nil {
				_, err = s.Recv()
			}
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), taptest.TapID) {
				t.Fatalf("Watch as %s: %v, want PermissionDenied naming %s", id, err, taptest.TapID)
			}
		})
	}
	if got := metric(t, server.Admin, tap.MetricWatches); got != 0 {
		t.Errorf("%s = %v after refused watches, want 0", tap.MetricWatches, got)
	}
}

// A tap client that never reads: the proxy drops events (counted) and
// requests go on at full speed.
func TestTapSlowConsumerDrops(t *testing.T) {
	m := taptest.NewMesh(t)
	server := taptest.StartProxy(t, m.Identity(t, taptest.APIID), func(c *proxy.Config) { c.InboundForward = taptest.Backend(t, "ok") })
	tc, closeConn, err := tap.Dial(server.Control, m.Identity(t, taptest.TapID).ClientConfig(taptest.APIID))
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled, err := tc.Watch(ctx, &tapv1.WatchRequest{MaxRps: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	waitWatches(t, server.Admin, 1)

	const n = 3000
	hc := &http.Client{Timeout: 5 * time.Second}
	var slowest time.Duration
	start := time.Now()
	for i := 0; i < n && time.Since(start) < 60*time.Second; i++ {
		t0 := time.Now()
		resp, err := hc.Get("http://" + server.Inbound + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slowest = max(slowest, time.Since(t0))
	}
	elapsed := time.Since(start)
	dropped := metric(t, server.Admin, tap.MetricEventsDropped)
	t.Logf("%d requests in %v (slowest %v) with a stalled tap; %v events dropped", n, elapsed, slowest, dropped)
	if dropped < n { // 3 events per request, far beyond the queue and the HTTP/2 window
		t.Errorf("%s = %v, want ≥ %d", tap.MetricEventsDropped, dropped, n)
	}
	if slowest > time.Second {
		t.Errorf("slowest request took %v with a stalled tap: the tap blocks requests", slowest)
	}
	// What the client finally reads is bounded by the queue plus what the
	// transport held, never the 3×n events produced.
	cancelRead := time.AfterFunc(2*time.Second, cancel)
	defer cancelRead.Stop()
	read := 0
	for {
		if _, err := stalled.Recv(); err != nil {
			if !errors.Is(ctx.Err(), context.Canceled) {
				t.Fatalf("reading the stalled watch: %v", err)
			}
			break
		}
		read++
	}
	if produced := 3 * n; float64(read)+dropped != float64(produced) {
		t.Errorf("read %d + dropped %v != %d events produced", read, dropped, produced)
	}
	if read > tap.DefaultQueue+2000 {
		t.Errorf("read %d events after the stall: more than the queue (%d) plus the transport window", read, tap.DefaultQueue)
	}
	t.Logf("read %d events after the stall", read)
}
