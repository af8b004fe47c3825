package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

// testProxy is a running proxy on loopback ports chosen by the kernel.
type testProxy struct {
	*Proxy
	admin, outbound, inbound string
	bindings                 []string
}

// startProxy runs a proxy with every listener on 127.0.0.1:0. Bindings are
// given as destination names; each gets its own listener.
func startProxy(t testing.TB, mutate func(*Config), bindDsts ...string) *testProxy {
	t.Helper()
	return startProxyWith(t, Options{}, mutate, bindDsts...)
}

func startProxyWith(t testing.TB, o Options, mutate func(*Config), bindDsts ...string) *testProxy {
	t.Helper()
	cfg := DefaultConfig()
	cfg.OutboundAddr, cfg.InboundAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.AdminAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownGrace = 2 * time.Second
	for _, d := range bindDsts {
		cfg.Bindings = append(cfg.Bindings, Binding{Listen: "127.0.0.1:0", Dst: d})
	}
	if mutate != nil {
		mutate(&cfg)
	}
	level := new(slog.LevelVar)
	if os.Getenv("WEFT_TEST_DEBUG") != "" {
		level.Set(slog.LevelDebug)
	} else {
		level.Set(slog.LevelWarn)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.Log, o.Level = log, level
	p, err := New(cfg, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	a := p.Addrs()
	tp := &testProxy{Proxy: p, admin: a[0].String(), outbound: a[2].String(), inbound: a[3].String()}
	for _, b := range a[4:] {
		tp.bindings = append(tp.bindings, b.String())
	}
	return tp
}

// metricsText fetches the proxy's /metrics.
func (tp *testProxy) metricsText(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + tp.admin + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue sums the samples of name whose labels contain every want pair.
func metricValue(t testing.TB, text, name string, want map[string]string) float64 {
	t.Helper()
	labels := make([]string, 0, len(want))
	for k, v := range want {
		labels = append(labels, fmt.Sprintf("%s=%q", k, v))
	}
	v, err := promtext.Sum(text, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// listenTCP starts a raw TCP server running handle for each connection.
func listenTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func h2cClient() *http.Client {
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: protos}, Timeout: 10 * time.Second}
}

func h2cServer(t testing.TB, h http.Handler) string {
	t.Helper()
	return h2cServerOn(t, nil, h)
}

// h2cServerOn is h2cServer accepting through sc (when not nil), which is
// given the loopback listener.
func h2cServerOn(t testing.TB, sc *segCounter, h http.Handler) string {
	t.Helper()
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	var l net.Listener
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if sc != nil {
		sc.Listener = l
		l = sc
	}
	srv := &http.Server{Handler: h, Protocols: protos}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// exchange sends msg over a new connection to addr, half-closes it, and
// returns everything read back (bounded to 5 s).
func exchange(t testing.TB, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}
