package destination

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
)

// profileBackend is an in-memory backend whose profile changes on demand.
type profileBackend struct {
	mu      sync.Mutex
	profile Profile
	subs    []func(Profile)
}

func (b *profileBackend) Subscribe(string, func(Snapshot)) (func(), error) { return func() {}, nil }
func (b *profileBackend) Profile(string) (Profile, error)                  { return b.profile, nil }
func (b *profileBackend) SubscribeProfile(_ string, update func(Profile)) (func(), error) {
	b.mu.Lock()
	b.subs = append(b.subs, update)
	p := b.profile
	b.mu.Unlock()
	update(p)
	return func() {}, nil
}
func (b *profileBackend) set(p Profile) {
	b.mu.Lock()
	b.profile = p
	subs := b.subs
	b.mu.Unlock()
	for _, s := range subs {
		s(p)
	}
}

func TestWatchProfileStreamsChanges(t *testing.T) {
	b := &profileBackend{profile: Profile{FullyQualifiedName: "books.shop.svc.cluster.local"}}
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := destinationv1.NewDestinationClient(cc).WatchProfile(ctx, &destinationv1.WatchRequest{Target: "books.shop.svc.cluster.local:80"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetFullyQualifiedName() != "books.shop.svc.cluster.local" || len(first.GetRoutes()) != 0 {
		t.Fatalf("first profile %v, %v", first, err)
	}
	withRoute := Profile{FullyQualifiedName: "books.shop.svc.cluster.local", Routes: []Route{{Name: "GET /books", Method: "GET",
		PathRegex: "/books", Timeout: 300 * time.Millisecond, Retryable: true, Classes: []ResponseClass{{StatusMin: 500, StatusMax: 599, Failure: true}}}},
		RetryBudget: &RetryBudget{Ratio: 0.2, MinPerSecond: 10, TTL: 10 * time.Second}}
	b.set(withRoute)
	b.set(withRoute) // unchanged: not resent
	b.set(Profile{FullyQualifiedName: "books.shop.svc.cluster.local", Opaque: true})
	second, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	r := second.GetRoutes()
	if len(r) != 1 || r[0].GetTimeout().AsDuration() != 300*time.Millisecond || !r[0].GetIsRetryable() ||
		r[0].GetCondition().GetMethod() != "GET" || r[0].GetResponseClasses()[0].GetStatusMin() != 500 ||
		second.GetRetryBudget().GetMinRetriesPerSecond() != 10 {
		// The newest-only buffer may have skipped straight to the third.
		if !second.GetOpaqueProtocol() {
			t.Fatalf("second profile %v", second)
		}
		return
	}
	third, err := stream.Recv()
	if err != nil || !third.GetOpaqueProtocol() || len(third.GetRoutes()) != 0 {
		t.Fatalf("third profile %v, %v (the duplicate must not be resent)", third, err)
	}
}
