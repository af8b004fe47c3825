package destination

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/destination/desttest"
)

// zoneBackend serves one snapshot to every subscriber and knows nodes'
// zones; set delivers a new snapshot (or the same one after a zone change).
type zoneBackend struct {
	mu    sync.Mutex
	snap  Snapshot
	zones map[string]string
	subs  []func(Snapshot)
}

func (b *zoneBackend) Subscribe(_ string, update func(Snapshot)) (func(), error) {
	b.mu.Lock()
	b.subs = append(b.subs, update)
	s := b.snap
	b.mu.Unlock()
	update(s)
	return func() {}, nil
}

func (b *zoneBackend) Profile(string) (Profile, error) { return Profile{}, nil }

func (b *zoneBackend) ZoneOf(node string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.zones[node]
}

func (b *zoneBackend) set(s Snapshot, zones map[string]string) {
	b.mu.Lock()
	b.snap, b.zones = s, zones
	subs := b.subs
	b.mu.Unlock()
	for _, u := range subs {
		u(s)
	}
}

// lastOctet shortens "198.18.0.N:80" to "N".
func lastOctet(a string) string { return strings.TrimSuffix(strings.TrimPrefix(a, "198.18.0."), ":80") }

func TestWatchFiltersByTheCallersZone(t *testing.T) {
	a1, b1 := zoned("1", "zone-a"), zoned("2", "zone-b")
	b := &zoneBackend{snap: Snapshot{Exists: true, Endpoints: []Endpoint{a1, b1}}, zones: map[string]string{"node-a": "zone-a", "node-b": "zone-b"}}
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, NewServer(b, slog.New(slog.NewTextHandler(io.Discard, nil))))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := destinationv1.NewDestinationClient(cc)
	const target = "web.shop.svc.cluster.local:80"
	streams := map[string]*desttest.Set{}
	for name, token := range map[string]string{
		"node-a":       `{"ns":"shop","nodeName":"node-a","pod":"client-a"}`,
		"node-b":       `{"ns":"shop","nodeName":"node-b","pod":"client-b"}`,
		"unknown node": `{"ns":"shop","nodeName":"node-x","pod":"client-x"}`,
		"no token":     "",
		"malformed":    `{"nodeName":`,
		"older form":   "ns:shop",
	} {
		streams[name] = desttest.Watch(ctx, t, c, target, token)
	}
	want := map[string]string{"node-a": "1", "node-b": "2", "unknown node": "1,2", "no token": "1,2", "malformed": "1,2", "older form": "1,2"}
	for name, s := range streams {
		s.WaitFor(t, name, want[name], lastOctet)
	}

	// node-b moves to zone-a; node-x appears in zone-b.
	b.set(b.snap, map[string]string{"node-a": "zone-a", "node-b": "zone-a", "node-x": "zone-b"})
	want["node-b"], want["unknown node"] = "1", "2"
	for name, s := range streams {
		s.WaitFor(t, name, want[name], lastOctet)
	}

	// An endpoint loses its hints: everyone gets everything.
	b.set(Snapshot{Exists: true, Endpoints: []Endpoint{a1, zoned("2")}}, b.zones)
	for name, s := range streams {
		s.WaitFor(t, name, "1,2", lastOctet)
	}
}
