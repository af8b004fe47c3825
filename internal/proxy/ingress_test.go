package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/discovery"
)

func TestIngressDestination(t *testing.T) {
	tests := []struct {
		name      string
		override  []string // nil: no header
		host      string
		orig      string
		want      string
		wantError string // a substring of the error; "" for none
	}{
		{"override", []string{"web.shop.svc.cluster.local:8080"}, "example.com", "198.19.0.10:80", "web.shop.svc.cluster.local:8080", ""},
		{"override without port", []string{"web.shop.svc.cluster.local"}, "example.com", "", "web.shop.svc.cluster.local:80", ""},
		{"override repeated alike (two proxy_set_header lines)", []string{"web.shop.svc.cluster.local:80", "web.shop.svc.cluster.local:80"}, "", "", "web.shop.svc.cluster.local:80", ""},
		{"override IP", []string{"198.19.0.10:80"}, "", "", "198.19.0.10:80", ""},
		{"Host", nil, "web.shop.svc.cluster.local", "198.19.0.10:80", "web.shop.svc.cluster.local:80", ""},
		{"Host with port", nil, "web.shop.svc.cluster.local:8080", "", "web.shop.svc.cluster.local:8080", ""},
		{"neither: original destination", nil, "", "198.19.0.10:80", "198.19.0.10:80", ""},
		{"nothing at all", nil, "", "", "", "no l5d-dst-override header and no Host"},
		{"empty override", []string{""}, "example.com", "", "", `l5d-dst-override "": empty`},
		{"override with scheme", []string{"http://web.shop.svc.cluster.local:80"}, "", "", "", "l5d-dst-override \"http://web.shop.svc.cluster.local:80\": not an authority"},
		{"override bad port", []string{"web.shop.svc.cluster.local:http"}, "", "", "", `bad port "http"`},
		{"override port 0", []string{"web.shop.svc.cluster.local:0"}, "", "", "", `bad port "0"`},
		{"override not a name", []string{"web shop:80"}, "", "", "", "neither a DNS name nor an IP"},
		{"unexpanded variable", []string{"$service_name.$namespace.svc.cluster.local:$service_port"}, "", "", "", "l5d-dst-override"},
		{"two destinations", []string{"web.shop.svc.cluster.local:80", "api.shop.svc.cluster.local:80"}, "", "", "", "more than one destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
			r.Host = tt.host
			for _, v := range tt.override {
				r.Header.Add(compat.HeaderDstOverride, v)
			}
			got, err := ingressDestination(r, tt.orig)
			switch {
			case tt.wantError == "" && err != nil:
				t.Fatalf("error %v, want %q", err, tt.want)
			case tt.wantError != "" && (err == nil || !strings.Contains(err.Error(), tt.wantError)):
				t.Fatalf("got %q, %v; want an error containing %q", got, err, tt.wantError)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// services is a destination backend serving fixed endpoint sets; any other
// name does not exist.
type services map[string][]destination.Endpoint

func (s services) Subscribe(name string, update func(destination.Snapshot)) (func(), error) {
	eps, ok := s[name]
	update(destination.Snapshot{Exists: ok, Endpoints: eps})
	return func() {}, nil
}

func (services) Profile(string) (destination.Profile, error) { return destination.Profile{}, nil }

// TestIngressModeThroughDiscovery: an ingress-mode proxy (identity web)
// with the destination service behind it routes plaintext HTTP from an
// ingress controller by l5d-dst-override, else by Host, to a Service of
// three meshed replicas: balanced over all three, mTLS to each (their
// inbound metrics name the ingress's identity), and a malformed override is
// a 400 naming the header, at once.
func TestIngressModeThroughDiscovery(t *testing.T) {
	m := newMesh(t)
	const svc = "api.shop.svc.cluster.local:80"
	var eps []destination.Endpoint
	var replicas []*testProxy
	for i := range 3 {
		app := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "replica=%d client-id=%s", i, r.Header.Get(compat.HeaderClientID))
		}))
		rp := meshedProxy(t, m.identity(t, apiID), func(c *Config) { c.InboundForward = app })
		replicas = append(replicas, rp)
		eps = append(eps, destination.Endpoint{Addr: rp.inbound, Identity: apiID, Meshed: true})
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, destination.NewServer(services{svc: eps}, quiet))
	go srv.Serve(l)
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := discovery.New(ctx, destinationv1.NewDestinationClient(conn), discovery.Options{Log: quiet})
	ingress := startProxyWith(t, Options{Discovery: res, Identity: m.identity(t, webID)}, func(c *Config) {
		c.IngressMode, c.DestinationAddr = true, l.Addr().String()
	})

	client := &http.Client{Timeout: 10 * time.Second}
	get := func(host string, override ...string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ingress.outbound+"/", nil)
		req.Host = host
		for _, o := range override {
			req.Header.Add(compat.HeaderDstOverride, o)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Eight concurrent clients, as an ingress has: the balancer weighs
	// in-flight requests, so all replicas serve.
	const workers, each = 8, 15
	const n = workers * each
	var mu sync.Mutex
	perReplica := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				host, override := "example.com", []string{svc}
				if (w+i)%2 == 1 {
					host, override = "api.shop.svc.cluster.local", nil // the Host alone
				}
				code, body := get(host, override...)
				if code != http.StatusOK || !strings.HasSuffix(body, "client-id="+webID) {
					t.Errorf("request (Host %s, override %v): %d %q", host, override, code, body)
					return
				}
				mu.Lock()
				perReplica[strings.Fields(body)[0]]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("requests per replica: %v", perReplica)
	for i := range 3 {
		if got := perReplica[fmt.Sprintf("replica=%d", i)]; got == 0 {
			t.Errorf("replica %d got none of %d requests, want the proxy to balance over all three", i, n)
		}
	}
	total := 0.0
	for i, rp := range replicas {
		v := metricValue(t, rp.metricsText(t), "request_total", map[string]string{"direction": "inbound", "tls": "true", "client_id": webID})
		if v != float64(perReplica[fmt.Sprintf("replica=%d", i)]) {
			t.Errorf("replica %d: inbound request_total{tls=true,client_id=web} = %v, want %d", i, v, perReplica[fmt.Sprintf("replica=%d", i)])
		}
		total += v
	}
	if total != n {
		t.Errorf("replicas counted %v mTLS requests from the ingress, want %d", total, n)
	}

	for _, bad := range []string{"http://" + svc, "api.shop.svc.cluster.local:http", "$service_name.$namespace.svc.cluster.local:$service_port"} {
		start := time.Now()
		code, body := get("example.com", bad)
		if code != http.StatusBadRequest || !strings.Contains(body, compat.HeaderDstOverride+" ") || !strings.Contains(body, bad) {
			t.Errorf("override %q: %d %q, want 400 naming %s and the value", bad, code, body, compat.HeaderDstOverride)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("override %q: answered after %v, want at once", bad, d)
		}
	}
}
