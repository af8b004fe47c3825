package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// echo answers with what it saw, so tests can check what crossed the proxies.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Orig-Proto", r.Header.Get(compat.HeaderOrigProto))
	w.Header().Set("X-Client-Id", r.Header.Get(compat.HeaderClientID))
	w.Header().Set("X-UA", r.Header.Get("User-Agent"))
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
}

// pair starts proxy B (inbound → backend) and proxy A (binding → B as a
// Weft peer) and returns A's binding address and both proxies.
func pair(t testing.TB, backend string) (addr string, a, b *testProxy) {
	return pairWith(t, backend, func(*Config) {})
}

// pairWith is pair with opt applied to both proxies' configurations.
func pairWith(t testing.TB, backend string, opt func(*Config)) (addr string, a, b *testProxy) {
	t.Helper()
	b = startProxy(t, func(c *Config) { c.InboundForward = backend; opt(c) })
	a = startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: b.inbound, Proxy: true}}}
		opt(c)
	}, "web.test:80")
	return a.bindings[0], a, b
}

// TestHTTP1AcrossProxyPairStaysHTTP1: HTTP/1 requests cross a proxy pair as
// HTTP/1 on pooled connections (no per-request connection, no HTTP/2
// upgrade between the proxies), with the hop's headers handled.
func TestHTTP1AcrossProxyPairStaysHTTP1(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	addr, a, b := pair(t, backend)

	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/echo?i=%d", addr, i), strings.NewReader("hello"))
			req.Host = "web.test"
			req.Header.Set(compat.HeaderClientID, "forged.identity")
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			want := fmt.Sprintf("POST /echo?i=%d hello", i)
			switch {
			case string(got) != want:
				errs <- fmt.Errorf("body = %q, want %q", got, want)
			case resp.Header.Get("X-Proto") != "HTTP/1.1":
				errs <- fmt.Errorf("backend saw %s, want HTTP/1.1 restored", resp.Header.Get("X-Proto"))
			case resp.Header.Get("X-Orig-Proto") != "":
				errs <- fmt.Errorf("l5d-orig-proto leaked to the application")
			case resp.Header.Get("X-Client-Id") != "":
				errs <- fmt.Errorf("forged l5d-client-id reached the application")
			case resp.Header.Get("X-Host") != "web.test":
				errs <- fmt.Errorf("Host = %q, want web.test", resp.Header.Get("X-Host"))
			case resp.Header.Get("X-UA") != "Go-http-client/1.1":
				errs <- fmt.Errorf("User-Agent = %q, want the client's", resp.Header.Get("X-UA"))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Fifty concurrent requests need at most fifty connections from A to
	// B; afterwards they are reused: twenty more, one at a time, open none.
	mb := b.metricsText(t)
	opened := metricValue(t, mb, "tcp_open_total", map[string]string{"direction": "inbound", "peer": "src"})
	if opened < 1 || opened > 50 {
		t.Errorf("inbound connections at B = %v, want 1..50", opened)
	}
	for i := range 20 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/echo?seq=%d", addr, i), nil)
		req.Host = "web.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("X-Proto"); got != "HTTP/1.1" {
			t.Fatalf("backend saw %s, want HTTP/1.1", got)
		}
	}
	mb = b.metricsText(t)
	if got := metricValue(t, mb, "tcp_open_total", map[string]string{"direction": "inbound", "peer": "src"}); got != opened {
		t.Errorf("inbound connections at B went from %v to %v over 20 sequential requests, want pooled connections reused", opened, got)
	}
	ma := a.metricsText(t)
	if got := metricValue(t, ma, "request_total", map[string]string{"direction": "outbound", "authority": "web.test"}); got != 70 {
		t.Errorf("outbound request_total = %v, want 70", got)
	}
	if got := metricValue(t, ma, "response_total", map[string]string{"direction": "outbound", "status_code": "200", "classification": "success"}); got != 70 {
		t.Errorf("outbound successful response_total = %v, want 70", got)
	}
	if got := metricValue(t, mb, "request_total", map[string]string{"direction": "inbound", "target_addr": backend}); got != 70 {
		t.Errorf("inbound request_total = %v, want 70", got)
	}
}

// TestInboundRestoresHTTP1FromOrigProto: a peer that upgrades HTTP/1 to
// HTTP/2 and names it in l5d-orig-proto (Linkerd's proxies, Weft before
// issue 17) still reaches the application as HTTP/1.1, without the header.
func TestInboundRestoresHTTP1FromOrigProto(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	_, _, b := pair(t, backend)
	req, _ := http.NewRequest("GET", "http://"+b.inbound+"/echo", nil)
	req.Host = "web.test"
	req.Header.Set(compat.HeaderOrigProto, "HTTP/1.1")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("client got %s, want HTTP/2", resp.Proto)
	}
	if got := resp.Header.Get("X-Proto"); got != "HTTP/1.1" {
		t.Errorf("backend saw %s, want HTTP/1.1 restored", got)
	}
	if got := resp.Header.Get("X-Orig-Proto"); got != "" {
		t.Errorf("l5d-orig-proto reached the application: %q", got)
	}
}

func TestStreamingTrailersAndGRPCStyleH2(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status, X-Sum")
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		sc := bufio.NewScanner(r.Body)
		n := 0
		for sc.Scan() { // echo each line as it arrives: a bidirectional stream
			n++
			fmt.Fprintf(w, "echo:%s\n", sc.Text())
			rc.Flush()
		}
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("X-Sum", fmt.Sprint(n))
	}))
	addr, a, _ := pair(t, backend)

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+addr+"/svc.Echo/Stream", pr)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := h2cClient().Do(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	fmt.Fprintln(pw, "one")
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no response headers while the request stream is open")
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for _, msg := range []string{"one", "two", "three"} {
		if msg != "one" {
			fmt.Fprintln(pw, msg)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "echo:"+msg+"\n" {
			t.Fatalf("stream read = %q, %v; want echo:%s", line, err, msg)
		}
	}
	pw.Close()
	io.Copy(io.Discard, br)
	if resp.ProtoMajor != 2 {
		t.Errorf("client got %s, want HTTP/2", resp.Proto)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("Grpc-Status trailer = %q, want 0", got)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "3" {
		t.Errorf("X-Sum trailer = %q, want 3", got)
	}
	m := a.metricsText(t)
	if got := metricValue(t, m, "response_total", map[string]string{"direction": "outbound", "grpc_status": "0", "classification": "success"}); got != 1 {
		t.Errorf("response_total{grpc_status=0} = %v, want 1", got)
	}
}

func TestGRPCFailureIsClassifiedAsFailure(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14") // trailers-only response: UNAVAILABLE
		w.WriteHeader(200)
	}))
	tp := startProxy(t, func(c *Config) { c.Destinations = map[string][]EndpointSpec{"grpc.test:80": {{Addr: backend}}} }, "grpc.test:80")
	resp, err := h2cClient().Post("http://"+tp.bindings[0]+"/svc/M", "application/grpc", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	m := tp.metricsText(t)
	if got := metricValue(t, m, "response_total", map[string]string{"grpc_status": "14", "classification": "failure"}); got != 1 {
		t.Errorf("response_total{grpc_status=14,classification=failure} = %v, want 1", got)
	}
}

func TestChunkedAndExpectContinue(t *testing.T) {
	var sawExpect atomic.Bool
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawExpect.Store(r.Header.Get("Expect") == "100-continue")
		echo(w, r)
	}))
	single := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: backend}}}
	}, "web.test:80")
	pairAddr, _, _ := pair(t, backend)
	tests := []struct {
		name       string
		addr       string
		wantExpect bool // HTTP/1 stays HTTP/1 across a pair, so Expect reaches the backend
	}{
		{"single hop", single.bindings[0], true},
		{"proxy pair", pairAddr, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Raw HTTP/1.1 so the test controls the bytes: chunked body, sent only after 100 Continue.
			c, err := net.Dial("tcp", tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: web.test\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
			br := bufio.NewReader(c)
			status, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
				t.Fatalf("first line = %q, %v; want 100 Continue before the body is sent", status, err)
			}
			br.ReadString('\n') // blank line after 100
			io.WriteString(c, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "PUT /up hello world" {
				t.Errorf("body = %q", body)
			}
			if got := sawExpect.Load(); got != tt.wantExpect {
				t.Errorf("backend saw Expect: %v, want %v", got, tt.wantExpect)
			}
		})
	}
}

func TestWebSocketUpgradePassthrough(t *testing.T) {
	backend := listenTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br) // echo the raw upgraded stream
	})
	addr, _, _ := pair(t, backend)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"ping", "\x00\xffbinary"} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
		}
	}
}

func TestRetriesIdempotentRequestsAroundDeadEndpoint(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	dead := deadAddr(t)
	tp := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"svc.test:80": {{Addr: dead}, {Addr: backend}}}
	}, "svc.test:80")
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 40 {
		resp, err := client.Get("http://" + tp.bindings[0] + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %d: status %d (%s), want 200 after retry", i, resp.StatusCode, resp.Header.Get(compat.HeaderProxyError))
		}
	}
	// A non-idempotent request with a body is not retried: send POSTs until
	// one lands on the dead endpoint (it is ejected after a few failures, so
	// use a pool with only the dead one).
	tp2 := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"svc.test:80": {{Addr: dead}}}
	}, "svc.test:80")
	resp, err := client.Post("http://"+tp2.bindings[0]+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", resp.StatusCode)
	}
	if e := resp.Header.Get(compat.HeaderProxyError); !strings.Contains(e, "connection refused") {
		t.Errorf("l5d-proxy-error = %q, want it to say connection refused", e)
	}
}

func TestResponseTimeout(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	tp := startProxy(t, func(c *Config) {
		c.ResponseTimeout = 200 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"slow.test:80": {{Addr: backend}}}
	}, "slow.test:80")
	start := time.Now()
	resp, err := http.Post("http://"+tp.bindings[0]+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504", resp.StatusCode)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v, want about the 200ms timeout", el)
	}
}

// TestResponseTimeoutResetsH2Upstream: an HTTP/2 request's timeout reaches
// its upstream stream (the HTTP/2 pool takes the request's context apart
// from the request): the backend sees the request canceled.
func TestResponseTimeoutResetsH2Upstream(t *testing.T) {
	canceled := make(chan time.Duration, 1)
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
			canceled <- time.Since(start)
		}
	}))
	tp := startProxy(t, func(c *Config) {
		c.ResponseTimeout = 200 * time.Millisecond
		c.Destinations = map[string][]EndpointSpec{"slow.test:80": {{Addr: backend}}}
	}, "slow.test:80")
	resp, err := h2cClient().Get("http://" + tp.bindings[0] + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("got %s %d, want HTTP/2 504", resp.Proto, resp.StatusCode)
	}
	select {
	case el := <-canceled:
		if el > 2*time.Second {
			t.Errorf("the backend saw the cancellation after %v, want about the 200ms timeout", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend's request was never canceled")
	}
}

func TestBalancingAvoidsSlowEndpoint(t *testing.T) {
	var counts [4]atomic.Int64
	var eps []EndpointSpec
	for i := range 4 {
		addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			counts[i].Add(1)
			if i == 0 {
				time.Sleep(25 * time.Millisecond)
			}
			w.Write([]byte("ok"))
		}))
		eps = append(eps, EndpointSpec{Addr: addr})
	}
	tp := startProxy(t, func(c *Config) { c.Destinations = map[string][]EndpointSpec{"lb.test:80": eps} }, "lb.test:80")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				resp, err := client.Get("http://" + tp.bindings[0] + "/")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	var total int64
	for i := range counts {
		total += counts[i].Load()
	}
	slowShare := float64(counts[0].Load()) / float64(total)
	t.Logf("requests per endpoint: slow=%d fast=%d,%d,%d (slow share %.1f%%)", counts[0].Load(), counts[1].Load(), counts[2].Load(), counts[3].Load(), 100*slowShare)
	if slowShare > 0.10 {
		t.Errorf("slow endpoint got %.1f%% of requests, want < 10%%", 100*slowShare)
	}
}

func TestIngressModeRoutesByOverrideHeader(t *testing.T) {
	web := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "web") }))
	api := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") }))
	tp := startProxy(t, func(c *Config) {
		c.IngressMode = true
		c.Destinations = map[string][]EndpointSpec{
			"web.ns.svc.cluster.local:80": {{Addr: web}},
			"api.ns.svc.cluster.local:80": {{Addr: api}},
		}
	})
	tests := []struct {
		host, override, want string
	}{
		{"web.ns.svc.cluster.local", "", "web"},
		{"web.ns.svc.cluster.local", "api.ns.svc.cluster.local:80", "api"},
		{"api.ns.svc.cluster.local:80", "", "api"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "http://"+tp.outbound+"/", nil)
		req.Host = tt.host
		if tt.override != "" {
			req.Header.Set(compat.HeaderDstOverride, tt.override)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != tt.want {
			t.Errorf("Host %s override %q: got %q, want %q", tt.host, tt.override, got, tt.want)
		}
	}
}

func TestLargeBodiesStream(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", fmt.Sprint(n))
		io.Copy(w, io.LimitReader(zeros{}, 8<<20))
	}))
	addr, _, _ := pair(t, backend)
	resp, err := http.Post("http://"+addr+"/", "application/octet-stream", io.LimitReader(zeros{}, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if n != 8<<20 || resp.Header.Get("X-Got") != fmt.Sprint(8<<20) {
		t.Errorf("sent 8 MiB, backend got %s; response %d bytes", resp.Header.Get("X-Got"), n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestDropConnectionToken(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		drop string
		want string // "" when the header goes
	}{
		{[]string{"l5d-client-id"}, "l5d-client-id", ""},
		{[]string{"keep-alive, L5d-Client-Id", "Upgrade"}, "l5d-client-id", "keep-alive, Upgrade"},
		{[]string{"Upgrade, HTTP2-Settings"}, "upgrade", "HTTP2-Settings"},
		{nil, "upgrade", ""},
	} {
		h := http.Header{}
		for _, v := range tt.in {
			h.Add("Connection", v)
		}
		dropConnectionToken(h, tt.drop)
		if got := h.Get("Connection"); got != tt.want || (tt.want == "" && len(h.Values("Connection")) != 0) {
			t.Errorf("dropConnectionToken(%q, %q): Connection = %q, want %q", tt.in, tt.drop, got, tt.want)
		}
	}
}
