package dstscale

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/serving"
)

type scale struct{ services, perService, streams, changes int }

func ptr[T any](v T) *T { return &v }

// addr gives endpoint i of service s a unique address in 198.18.0.0/16
// (the pod range): 40 endpoints per /24 block.
func addr(s, i int) string {
	n := s*40 + i
	return fmt.Sprintf("198.18.%d.%d", 10+n/250, 1+n%250)
}

// TestDestinationAtScale reports the controller's memory and CPU and how
// long an EndpointSlice change takes to reach the streams that watch it.
func TestDestinationAtScale(t *testing.T) {
	sc := scale{services: 50, perService: 20, streams: 100, changes: 50}
	if os.Getenv("WEFT_DST_SCALE") == "full" {
		sc = scale{services: 500, perService: 20, streams: 1000, changes: 200}
	}
	api := kubetest.StartAPIServer(t)
	cfg := *api.Config
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "scale"
	c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{})

	start := time.Now()
	parallel(t, sc.services, 16, func(s int) error {
		name := fmt.Sprintf("svc-%d", s)
		if _, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		var eps []discoveryv1.Endpoint
		for i := range sc.perService {
			pod := fmt.Sprintf("%s-%d", name, i)
			p, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod,
				Labels: map[string]string{"linkerd.io/control-plane-ns": "linkerd", "linkerd.io/proxy-deployment": name}},
				Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			p.Status.PodIP, p.Status.PodIPs = addr(s, i), []corev1.PodIP{{IP: addr(s, i)}}
			if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				return err
			}
			eps = append(eps, endpoint(addr(s, i), pod))
		}
		_, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
			Endpoints: eps}, metav1.CreateOptions{})
		return err
	})
	t.Logf("created %d Services, %d Pods and EndpointSlices with %d endpoints in %v",
		sc.services, sc.services*sc.perService, sc.services*sc.perService, time.Since(start).Round(time.Millisecond))

	// The controller, as its own process.
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/weft-controller")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	ctl := exec.Command(filepath.Join(bin, "weft-controller"), "destination", "--kubeconfig", api.Kubeconfig, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--log-level", "warn", "--plaintext", "--addr-file", addrFile)
	ctl.Stderr = os.Stderr
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { ctl.Wait(); close(exited) }()
	t.Cleanup(func() { ctl.Process.Kill(); <-exited })
	addrs, err := serving.ReadAddrFile(addrFile, 60*time.Second, exited)
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, adminAddr := addrs["destination gRPC server"], addrs["destination admin server"]
	proctest.WaitReady(t, "http://"+adminAddr+"/ready", 60*time.Second)
	idleRSS, idleCPU := procStats(t, ctl.Process.Pid)

	// The streams: by name and by ClusterIP alternately, over 10 connections.
	ips := map[int]string{}
	svcs, _ := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	for _, s := range svcs.Items {
		n, _ := strconv.Atoi(strings.TrimPrefix(s.Name, "svc-"))
		ips[n] = s.Spec.ClusterIP
	}
	var conns []*grpc.ClientConn
	for range 10 {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, cc)
		defer cc.Close()
	}
	watchers := make([]*watcher, sc.streams)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start = time.Now()
	for i := range sc.streams {
		s := i % sc.services
		target := fmt.Sprintf("svc-%d.%s.svc.cluster.local:80", s, ns)
		if (i/sc.services)%2 == 1 {
			target = ips[s] + ":80"
		}
		w := &watcher{service: s, seen: map[string]time.Time{}}
		watchers[i] = w
		stream, err := destinationv1.NewDestinationClient(conns[i%len(conns)]).Watch(sctx, &destinationv1.WatchRequest{Target: target})
		if err != nil {
			t.Fatal(err)
		}
		go w.run(stream)
	}
	for _, w := range watchers {
		w.waitCount(t, sc.perService)
	}
	t.Logf("%d streams received their %d endpoints each in %v", sc.streams, sc.perService, time.Since(start).Round(time.Millisecond))
	loadedRSS, loadedCPU := procStats(t, ctl.Process.Pid)

	// Changes: one endpoint added to a service's slice at a time; the
	// latency is from the API's answer to the update to each watching
	// stream's receipt of the new address.
	var lat []time.Duration
	for k := range sc.changes {
		s := (k * 7) % sc.services
		name := fmt.Sprintf("svc-%d", s)
		es, err := c.DiscoveryV1().EndpointSlices(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		newAddr := fmt.Sprintf("198.18.%d.%d", 200+k/250, 1+k%250)
		es.Endpoints = append(es.Endpoints, endpoint(newAddr, ""))
		if _, err := c.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		for _, w := range watchers {
			if w.service == s {
				lat = append(lat, w.waitAddr(t, newAddr+":8080").Sub(changed))
			}
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	endRSS, endCPU := procStats(t, ctl.Process.Pid)
	t.Logf("propagation over %d changes × their streams (%d samples): p50 %v, p99 %v, max %v",
		sc.changes, len(lat), pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	t.Logf("controller RSS: %.1f MiB synced, %.1f MiB with %d streams, %.1f MiB after the changes",
		idleRSS/1024, loadedRSS/1024, sc.streams, endRSS/1024)
	t.Logf("controller CPU: %.2fs to sync, %.2fs to open the streams, %.2fs for %d changes (%.1f ms each)",
		idleCPU, loadedCPU-idleCPU, endCPU-loadedCPU, sc.changes, 1000*(endCPU-loadedCPU)/float64(sc.changes))
	if os.Getenv("WEFT_DST_SCALE") == "full" && pct(0.99) > 100*time.Millisecond {
		t.Errorf("p99 propagation %v, target ≤ 100ms", pct(0.99))
	}
}

func endpoint(a, pod string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}}
	if pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return e
}

// watcher records when each address first arrived on one stream.
type watcher struct {
	service int
	mu      sync.Mutex
	seen    map[string]time.Time
	err     error
}

func (w *watcher) run(stream destinationv1.Destination_WatchClient) {
	for {
		u, err := stream.Recv()
		now := time.Now()
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.mu.Unlock()
			return
		}
		for _, e := range u.GetAdd().GetEndpoints() {
			if _, ok := w.seen[e.GetAddr()]; !ok {
				w.seen[e.GetAddr()] = now
			}
		}
		w.mu.Unlock()
	}
}

func (w *watcher) waitCount(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		got, err := len(w.seen), w.err
		w.mu.Unlock()
		if err != nil {
			t.Fatalf("stream for service %d: %v", w.service, err)
		}
		if got >= n {
			return
		}
	}
	t.Fatalf("stream for service %d: fewer than %d endpoints after 60s", w.service, n)
}

func (w *watcher) waitAddr(t *testing.T, a string) time.Time {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		w.mu.Lock()
		at, ok := w.seen[a]
		w.mu.Unlock()
		if ok {
			return at
		}
	}
	t.Fatalf("stream for service %d never received %s", w.service, a)
	return time.Time{}
}

// procStats returns a process's RSS (KiB) and CPU time (s).
func procStats(t *testing.T, pid int) (rssKiB, cpuSec float64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKiB, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return rssKiB, (utime + stime) / 100 // clock ticks (USER_HZ = 100)
}

func parallel(t *testing.T, n, workers int, fn func(int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
