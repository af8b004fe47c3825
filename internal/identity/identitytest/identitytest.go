// Package identitytest serves an identity service over gRPC on loopback
// for tests and hands back a client of it.
package identitytest

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
)

// Serve serves svc on a loopback port until the test ends and returns a
// client connected to it.
func Serve(t testing.TB, svc identityv1.IdentityServer) identityv1.IdentityClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	identityv1.RegisterIdentityServer(srv, svc)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return identityv1.NewIdentityClient(conn)
}
