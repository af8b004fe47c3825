package policyscale

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/kubetest/crds"
	"github.com/weftmesh/weft/internal/policy/outbound"
	outboundkube "github.com/weftmesh/weft/internal/policy/outbound/kube"
	"github.com/weftmesh/weft/internal/routeapi"
)

type scale struct{ routes, streamsPerRoute, changes int }

var httpRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

func routeObject(i, weight int, n int) *unstructured.Unstructured {
	next := (i + 1) % n
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": fmt.Sprintf("route-%d", i), "namespace": "bench"},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": fmt.Sprintf("svc-%d", i), "kind": "Service", "group": "core", "port": int64(80)}},
			"rules": []any{map[string]any{"backendRefs": []any{
				map[string]any{"name": fmt.Sprintf("svc-%d", i), "port": int64(80), "weight": int64(weight)},
				map[string]any{"name": fmt.Sprintf("svc-%d", next), "port": int64(80), "weight": int64(100 - weight)},
			}}},
		},
	}}
}

// seen records, per route, when each stream first carried each weight.
type seen struct {
	mu sync.Mutex
	at map[int]map[int][]time.Time // route → weight → first-seen times, one per stream
}

func (s *seen) record(route, weight int, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at[route] == nil {
		s.at[route] = map[int][]time.Time{}
	}
	s.at[route][weight] = append(s.at[route][weight], now)
}

func (s *seen) times(route, weight int) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at[route][weight])
}

// TestRoutePropagationAtScale reports how long a route update at the API
// server takes to reach the streams that watch its Service.
func TestRoutePropagationAtScale(t *testing.T) {
	sc := scale{routes: 50, streamsPerRoute: 2, changes: 30}
	if os.Getenv("WEFT_POLICY_SCALE") == "full" {
		sc = scale{routes: 500, streamsPerRoute: 2, changes: 200}
	}
	api := kubetest.StartAPIServer(t)
	cfg := *api.Config
	cfg.QPS, cfg.Burst = 2000, 4000
	client, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	crds.Install(t, &cfg, nil)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range sc.routes {
		if _, err := client.CoreV1().Services("bench").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", i)},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(httpRoutes).Namespace("bench").Create(ctx, routeObject(i, 50, sc.routes), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("created %d Services and %d HTTPRoutes in %v", sc.routes, sc.routes, time.Since(start).Round(time.Millisecond))

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ix := outbound.NewIndex("cluster.local", quiet)
	start = time.Now()
	ad, err := outboundkube.Start(ctx, client, dyn, ix, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for !ad.Ready() {
		if time.Since(start) > time.Minute {
			t.Fatal("informers did not sync")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("index synced in %v", time.Since(start).Round(time.Millisecond))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	policyv1.RegisterOutboundPoliciesServer(srv, outbound.NewServer(ix, quiet))
	go srv.Serve(l)
	defer srv.Stop()

	// The streams: a few connections, as many proxies' worth of watches.
	var conns []*grpc.ClientConn
	for range 10 {
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	rec := &seen{at: map[int]map[int][]time.Time{}}
	streams := sc.routes * sc.streamsPerRoute
	start = time.Now()
	for n := range streams {
		i := n % sc.routes
		c := policyv1.NewOutboundPoliciesClient(conns[n%len(conns)])
		s, err := c.Watch(ctx, &policyv1.OutboundRequest{Target: fmt.Sprintf("svc-%d.bench.svc.cluster.local:80", i)})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			last := -1
			for {
				m, err := s.Recv()
				if err != nil {
					return
				}
				tab, err := routeapi.Decode(m)
				if err != nil || tab == nil || len(tab.HTTP) != 1 {
					continue
				}
				if w := int(tab.HTTP[0].Rules[0].Backends[0].Weight); w != last {
					last = w
					rec.record(i, w, time.Now())
				}
			}
		}()
	}
	for i := range sc.routes {
		for len(rec.times(i, 50)) < sc.streamsPerRoute {
			if time.Since(start) > time.Minute {
				t.Fatalf("route %d: %d of %d streams got the first table", i, len(rec.times(i, 50)), sc.streamsPerRoute)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("%d streams received their first table in %v", streams, time.Since(start).Round(time.Millisecond))

	var first, all []time.Duration
	for k := range sc.changes {
		i := (k * 7) % sc.routes
		w := 51 + k%49
		for len(rec.times(i, w)) > 0 { // a weight this route had before: pick another
			w = 1 + (w+1)%49
		}
		var t0 time.Time
		for attempt := 0; ; attempt++ { // the status writer updates the objects too
			cur, err := dyn.Resource(httpRoutes).Namespace("bench").Get(ctx, fmt.Sprintf("route-%d", i), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			obj := routeObject(i, w, sc.routes)
			obj.SetResourceVersion(cur.GetResourceVersion())
			t0 = time.Now()
			_, err = dyn.Resource(httpRoutes).Namespace("bench").Update(ctx, obj, metav1.UpdateOptions{})
			if err == nil {
				break
			}
			if !apierrors.IsConflict(err) || attempt == 10 {
				t.Fatal(err)
			}
		}
		for len(rec.times(i, w)) < sc.streamsPerRoute {
			if time.Since(t0) > 10*time.Second {
				t.Fatalf("change %d (route %d → %d): %d of %d streams updated after 10s", k, i, w, len(rec.times(i, w)), sc.streamsPerRoute)
			}
			time.Sleep(time.Millisecond)
		}
		ts := rec.times(i, w)
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		first = append(first, ts[0].Sub(t0))
		all = append(all, ts[len(ts)-1].Sub(t0))
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
	}
	t.Logf("%d routes, %d streams, %d route updates: apply → first stream p50 %v, p99 %v, max %v; → every stream of the Service p50 %v, p99 %v, max %v",
		sc.routes, streams, sc.changes, pct(first, 0.5), pct(first, 0.99), pct(first, 1), pct(all, 0.5), pct(all, 0.99), pct(all, 1))
	if p := pct(first, 0.99); p > time.Second {
		t.Errorf("p99 propagation %v, target ≤ 1s", p)
	}
}
