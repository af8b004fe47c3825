package controller

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/trace/tracetest"
)

// runPlaintextDestination runs `weft-controller destination --plaintext`
// (registry backend) with trace options to, and returns its gRPC and
// admin addresses.
func runPlaintextDestination(t *testing.T, to TraceOptions) (string, string) {
	t.Helper()
	registry := writeFile(t, "registry.yaml", fmt.Sprintf("services:\n- name: %s\n  endpoints:\n  - {addr: %q}\n", apiAuthity, apiAddr))
	o := DestinationOptions{Registry: registry, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Reload: time.Second,
		ClusterDomain: "cluster.local", ControllerNS: compat.DefaultControlPlaneNamespace, TrustDomain: "cluster.local",
		TLS: ServingIdentity{Plaintext: true}, Trace: to}
	addr, admin := startDestination(t, o)
	waitReady(t, admin)
	return addr, admin
}

func adminMetrics(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDestinationTracing: with --trace-collector, a Watch call to the
// destination service reaches a real OTLP receiver as a server span named
// after the gRPC method, child of the traceparent the caller sent; without
// it, no span and no tracing metrics.
func TestDestinationTracing(t *testing.T) {
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	col := tracetest.OTLP(t, nil)
	for _, tc := range []struct {
		name  string
		trace TraceOptions
		spans int
	}{
		{"collector", TraceOptions{Collector: col.Addr, ServiceName: "linkerd-destination"}, 1},
		{"no collector", TraceOptions{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(col.Spans())
			addr, admin := runPlaintextDestination(t, tc.trace)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := firstUpdateCtx(ctx, conn); err != nil {
				t.Fatalf("Watch: %v", err)
			}
			cancel() // ends the stream, and so its span
			hasMetrics := strings.Contains(adminMetrics(t, admin), "trace_spans_exported_total")
			if hasMetrics != (tc.spans > 0) {
				t.Errorf("trace_spans_exported_total on /metrics: %v, want %v", hasMetrics, tc.spans > 0)
			}
			if tc.spans == 0 {
				time.Sleep(1500 * time.Millisecond) // past the flush interval
				if got := len(col.Spans()) - before; got != 0 {
					t.Errorf("%d spans received without --trace-collector", got)
				}
				return
			}
			spans := col.Wait(t, before+tc.spans, 10*time.Second)
			var found bool
			for _, s := range spans {
				t.Logf("span: %v", s)
				if s.Name == "weft.destination.v1.Destination/Watch" && s.Kind == "server" && s.Service == "linkerd-destination" &&
					s.TraceID == traceID && s.ParentID == parentID {
					found = true
				}
			}
			if !found {
				t.Errorf("no server span weft.destination.v1.Destination/Watch of service linkerd-destination, child of %s in trace %s", parentID, traceID)
			}
		})
	}
}

// firstUpdateCtx is firstUpdate within ctx (which carries the caller's
// trace context).
func firstUpdateCtx(ctx context.Context, conn *grpc.ClientConn) (*destinationv1.Update, error) {
	s, err := destinationv1.NewDestinationClient(conn).Watch(ctx, &destinationv1.WatchRequest{Target: apiAuthity})
	if err != nil {
		return nil, err
	}
	return s.Recv()
}
