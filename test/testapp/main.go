// Command testapp is the small application Weft's tests run behind proxies:
// an HTTP server that says who answered and who called, and a TCP echo
// server on one or more ports (as a database would listen). It knows
// nothing of the mesh. It also serves a server-speaks-first protocol
// (-tcp-banner), and has client modes for HTTP, TCP and banners. With
// -next it is one service of a chain: each request calls the next service,
// forwarding the trace context it received (W3C and b3 headers) as an
// application without spans of its own does.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

func main() {
	httpAddr := flag.String("http", "", "serve HTTP on this address")
	echoAddrs := flag.String("tcp-echo", "", "serve a TCP echo server on these addresses (comma-separated, e.g. :5432,:6379)")
	failRate := flag.Int("fail-every", 0, "answer 500 to every Nth request (0: never)")
	failFirst := flag.Int("fail-first", 0, "answer 500 to the first N requests, logging when each arrived (t=unix nanoseconds)")
	delay := flag.Duration("delay", 0, "wait this long before answering")
	logRequests := flag.Bool("log-requests", false, "print each HTTP request's peer address and path (\"request remote=ADDR path=PATH\")")
	next := flag.String("next", "", "with -http: each request GETs this URL first, forwarding the request's trace headers, and the answer follows this service's line")
	get := flag.String("get", "", "client mode: GET this URL -n times, print each answer, fail on any non-200")
	count := flag.Int("n", 1, "how many requests -get sends")
	interval := flag.Duration("interval", 0, "pause between -get requests (steady traffic)")
	stamp := flag.Bool("stamp", false, "-get prints when each request was sent (unix nanoseconds) before its answer")
	waitRefused := flag.Duration("wait-refused", 0, "with -get: while the first request's connection is refused (a Service kube-proxy has not programmed yet), try again every 250ms for up to this long")
	var headers []string
	flag.Func("header", `"Name: value" header -get sends (repeatable)`, func(v string) error {
		if !strings.Contains(v, ":") {
			return fmt.Errorf("want Name: value, got %q", v)
		}
		headers = append(headers, v)
		return nil
	})
	skip := flag.Int("tally-skip", 0, "with -tally: do not count the first N answers (a warm-up)")
	tally := flag.Bool("tally", false, "with -get: do not stop on a non-200 answer; print one line per status, \"status=<code> count=<n>\", then \"seconds=<s>\", the time from the first request to the last answer")
	send := flag.String("tcp-send", "", "client mode: send -msg to this address, half-close, print the answer")
	msg := flag.String("msg", "\x01opaque-bytes", "what -tcp-send sends")
	bannerAddr := flag.String("tcp-banner", "", "serve a server-speaks-first TCP protocol on this address: a banner line at once, then an echo of what the client sends")
	readBanner := flag.String("tcp-read-banner", "", "client mode: connect to this address without sending, print the first line the server sends and how long it took")
	flag.Parse()
	if *readBanner != "" {
		if err := readBannerLine(*readBanner); err != nil {
			log.Fatalf("testapp: %v", err)
		}
		return
	}
	if *get != "" && *tally {
		if err := tallyN(*get, *count, *skip, *interval, *waitRefused); err != nil {
			log.Fatalf("testapp: %v", err)
		}
		return
	}
	if *get != "" {
		if err := getN(*get, *count, *interval, *stamp, headers, *waitRefused); err != nil {
			log.Fatalf("testapp: %v", err)
		}
		return
	}
	if *send != "" {
		if err := sendTCP(*send, *msg); err != nil {
			log.Fatalf("testapp: %v", err)
		}
		return
	}
	if *httpAddr == "" && *echoAddrs == "" && *bannerAddr == "" {
		log.Fatal("testapp: give -http, -tcp-echo and/or -tcp-banner, or a client mode")
	}
	host, _ := os.Hostname()
	errc := make(chan error, 1)
	if *bannerAddr != "" {
		l, err := net.Listen("tcp", *bannerAddr)
		if err != nil {
			log.Fatalf("testapp: %v", err)
		}
		go func() { errc <- serveBanner(l, host) }()
	}
	for _, addr := range strings.Split(*echoAddrs, ",") {
		if addr = strings.TrimSpace(addr); addr == "" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("testapp: %v", err)
		}
		go func() { errc <- serveEcho(l) }()
	}
	if *httpAddr != "" {
		var n atomic.Int64
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := n.Add(1)
			if *logRequests {
				fmt.Printf("request remote=%s path=%s\n", r.RemoteAddr, r.URL.Path)
			}
			time.Sleep(*delay)
			io.Copy(io.Discard, r.Body)
			if i <= int64(*failFirst) {
				fmt.Printf("failed request %d t=%d\n", i, time.Now().UnixNano())
				http.Error(w, "injected failure", http.StatusInternalServerError)
				return
			}
			if *failRate > 0 && i%int64(*failRate) == 0 {
				http.Error(w, "injected failure", http.StatusInternalServerError)
				return
			}
			if *next != "" {
				body, err := callNext(r, *next)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				fmt.Fprintf(w, "host=%s path=%s trace=%q\n%s", host, r.URL.Path, traceHeaders(r.Header), body)
				return
			}
			fmt.Fprintf(w, "host=%s remote=%s client-id=%s path=%s forwarded=%q xff=%q\n", host, r.RemoteAddr, r.Header.Get(compat.HeaderClientID), r.URL.Path,
				strings.Join(r.Header.Values("Forwarded"), ", "), strings.Join(r.Header.Values("X-Forwarded-For"), ", "))
		})
		go func() {
			errc <- (&http.Server{Addr: *httpAddr, Handler: h, ReadHeaderTimeout: 10 * time.Second}).ListenAndServe()
		}()
	}
	log.Fatalf("testapp: %v", <-errc)
}

// doFirst sends req with c, again every 250ms while its connection is
// refused, until wait has passed: nothing was sent by a refused one.
func doFirst(c *http.Client, req *http.Request, wait time.Duration) (*http.Response, error) {
	until := time.Now().Add(wait)
	for {
		resp, err := c.Do(req)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(until) {
			return resp, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func getN(url string, n int, interval time.Duration, stamp bool, headers []string, waitRefused time.Duration) error {
	// A new connection per request, so connection-level balancing (kube-proxy) shows.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < n; i++ {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		sent := time.Now()
		var resp *http.Response
		if i == 0 {
			resp, err = doFirst(c, req, waitRefused)
		} else {
			resp, err = c.Do(req)
		}
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if stamp {
			fmt.Printf("t=%d ", sent.UnixNano())
		}
		fmt.Print(string(b))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		time.Sleep(interval)
	}
	return nil
}

// tallyN sends n GETs, one every interval (from the previous one's start),
// and prints how many of those after the first skip got each status.
func tallyN(url string, n, skip int, interval, waitRefused time.Duration) error {
	c := &http.Client{Timeout: 5 * time.Second}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	counts := map[int]int{}
	began := time.Now()
	next := began
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		code := 0
		wait := time.Duration(0)
		if i == 0 {
			wait = waitRefused
		}
		if resp, err := doFirst(c, req, wait); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
		}
		if i >= skip {
			counts[code]++
		}
	}
	for code, k := range counts {
		fmt.Printf("status=%d count=%d\n", code, k)
	}
	fmt.Printf("seconds=%.3f\n", time.Since(began).Seconds())
	return nil
}

func sendTCP(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	fmt.Print(string(b))
	return err
}

func serveEcho(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			b, _ := io.ReadAll(io.LimitReader(c, 1<<20))
			c.Write([]byte("echo:" + strings.TrimSpace(string(b)) + "\n"))
		}()
	}
}

// serveBanner speaks first, as SMTP or MySQL do: a banner line on accept,
// then it echoes what the client sends.
func serveBanner(l net.Listener, host string) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "220 %s ready\n", host)
			io.Copy(c, io.LimitReader(c, 1<<20))
		}()
	}
}

// readBannerLine connects without sending anything and prints the first
// line the server sends, with how long it took ("after=<ms>ms").
func readBannerLine(addr string) error {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(start.Add(15 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("no banner from %s after %v: %v", addr, took.Round(time.Millisecond), err)
	}
	fmt.Printf("banner=%q after=%dms\n", strings.TrimSpace(line), took.Milliseconds())
	return nil
}

// propagated are the trace context headers an application forwards: W3C
// Trace Context and Zipkin's b3 (single and multi).
var propagated = []string{"Traceparent", "Tracestate", "B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"}

// traceHeaders lists the request's trace headers, "name=value" joined by
// spaces.
func traceHeaders(h http.Header) string {
	var out []string
	for _, k := range propagated {
		if v := h.Get(k); v != "" {
			out = append(out, strings.ToLower(k)+"="+v)
		}
	}
	return strings.Join(out, " ")
}

// callNext GETs url with r's trace headers and returns the answer's body.
func callNext(r *http.Request, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for _, k := range propagated {
		if v := r.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("next %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("next %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("next %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}
