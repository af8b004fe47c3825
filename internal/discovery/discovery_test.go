package discovery

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/destination"
	"github.com/weftmesh/weft/internal/poll"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// controlPlane is a real destination gRPC server on a fixed loopback port
// that a test can stop and start again.
type controlPlane struct {
	addr    string
	backend *destination.FileBackend
	srv     *grpc.Server
}

func (c *controlPlane) start(t *testing.T) {
	t.Helper()
	var l net.Listener
	var err error
	for range 50 { // the port may linger briefly after a stop
		if l, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.addr = l.Addr().String()
	c.srv = grpc.NewServer()
	destinationv1.RegisterDestinationServer(c.srv, destination.NewServer(c.backend, quiet))
	go c.srv.Serve(l)
}

func writeRegistry(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func addrs(p *balance.Pool) string {
	var out []string
	for _, e := range p.Endpoints() {
		s := e.Addr
		if id := e.Peer.Identity; id != "" {
			s += "@" + id
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func TestResolverFollowsRegistry(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.yaml")
	writeRegistry(t, reg, `services:
- name: web.shop.svc.cluster.local:80
  labels: {dst_service: web}
  endpoints:
  - {addr: 127.0.0.1:9001, meshed: true, identity: web.shop.serviceaccount.identity.linkerd.cluster.local}
  - {addr: 127.0.0.1:9002}
`)
	backend, err := destination.NewFileBackend(reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go backend.Run(ctx, 20*time.Millisecond)
	cp := &controlPlane{addr: "127.0.0.1:0", backend: backend}
	cp.start(t)
	defer func() { cp.srv.Stop() }()
	conn, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := New(ctx, destinationv1.NewDestinationClient(conn), Options{Log: quiet, InitialWait: 2 * time.Second})

	const web = "web.shop.svc.cluster.local:80"
	d, err := r.Resolve(web)
	if err != nil {
		t.Fatal(err)
	}
	pool := d.Pool
	want := "127.0.0.1:9001@web.shop.serviceaccount.identity.linkerd.cluster.local,127.0.0.1:9002"
	if got := addrs(pool); got != want {
		t.Fatalf("endpoints = %s, want %s", got, want)
	}

	// Scale up, one endpoint terminating (drained: not picked for new requests).
	writeRegistry(t, reg, `services:
- name: web.shop.svc.cluster.local:80
  endpoints:
  - {addr: 127.0.0.1:9001, meshed: true, identity: web.shop.serviceaccount.identity.linkerd.cluster.local, terminating: true}
  - {addr: 127.0.0.1:9002}
  - {addr: 127.0.0.1:9003}
`)
	poll.Until(t, 5*time.Second, "scale-up with a terminating endpoint", func() bool { return addrs(pool) == "127.0.0.1:9002,127.0.0.1:9003" })

	// An unknown IP:port is forwarded as addressed.
	d2, _ := r.Resolve("198.18.7.7:8080")
	if got := addrs(d2.Pool); got != "198.18.7.7:8080" {
		t.Errorf("unknown target resolves to %s, want itself", got)
	}

	// The control plane goes away: the last known endpoints stay.
	cp.srv.Stop()
	time.Sleep(200 * time.Millisecond)
	if got := addrs(pool); got != "127.0.0.1:9002,127.0.0.1:9003" {
		t.Errorf("after the control plane stopped: %s, want the last known set", got)
	}
	// It changes while away, comes back on the same address: the proxy converges.
	writeRegistry(t, reg, `services:
- name: web.shop.svc.cluster.local:80
  endpoints:
  - {addr: 127.0.0.1:9004}
`)
	cp.start(t)
	poll.Until(t, 5*time.Second, "convergence after reconnect", func() bool { return addrs(pool) == "127.0.0.1:9004" })

	// A broken edit is refused; the last good registry keeps serving.
	writeRegistry(t, reg, "services: [{name: nonsense}]")
	time.Sleep(200 * time.Millisecond)
	if got := addrs(pool); got != "127.0.0.1:9004" {
		t.Errorf("after an invalid registry: %s, want 127.0.0.1:9004 kept", got)
	}
	// The service is deleted: its name now resolves as addressed.
	writeRegistry(t, reg, "services: []")
	poll.Until(t, 5*time.Second, "deletion", func() bool { d, _ := r.Resolve(web); return addrs(d.Pool) == web })
}
