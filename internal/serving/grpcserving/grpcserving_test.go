package grpcserving

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/internal/serving"
)

// TestGRPCUnderRun: a gRPC server beside an HTTP one. Whichever listener
// is closed under its server, Run returns an error naming it and stops
// the other; when ctx ends instead, Run returns nil.
func TestGRPCUnderRun(t *testing.T) {
	tests := []struct {
		name   string
		broken int // which server's listener is closed; -1: ctx ends
	}{
		{"gRPC server fails", 0},
		{"HTTP server fails", 1},
		{"ctx ends", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := serving.Listen("127.0.0.1:0", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gs := grpc.NewServer()
			healthpb.RegisterHealthServer(gs, health.NewServer())
			servers := []serving.Server{Server("test gRPC server", ls[0], gs, time.Second),
				serving.HTTP("test admin server", ls[1], &http.Server{Handler: http.NotFoundHandler()}, 0)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- serving.Run(ctx, nil, servers...) }()

			conn, err := grpc.NewClient(ls[0].Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
				t.Fatalf("gRPC server not serving: %v", err)
			}

			if tt.broken >= 0 {
				ls[tt.broken].Close()
			} else {
				cancel()
			}
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s")
			}
			if tt.broken < 0 {
				if err != nil {
					t.Fatalf("Run after ctx ended: got %v, want nil", err)
				}
			} else if want := servers[tt.broken].Name + " on " + servers[tt.broken].Addr.String(); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Run: got %v, want an error naming %q", err, want)
			}
			for _, l := range ls {
				if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
					c.Close()
					t.Fatalf("%s still accepting after Run returned", l.Addr())
				}
			}
		})
	}
}
