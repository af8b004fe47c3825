package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/route"
)

// grpcServer is a real gRPC server answering any method with its name;
// fail decides per call (1-based) to fail with UNAVAILABLE, half of the
// failures after sending response headers (grpc-status in trailers), half
// trailers-only.
func grpcServer(t testing.TB, name string, fail func(int64) bool) string {
	t.Helper()
	var n atomic.Int64
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in wrapperspb.StringValue
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		if i := n.Add(1); fail != nil && fail(i) {
			if i%2 == 0 {
				stream.SendHeader(metadata.MD{})
			}
			return status.Error(codes.Unavailable, "injected")
		}
		method, _ := grpc.MethodFromServerStream(stream)
		if method == "/test.Echo/Stream" { // server streaming: a message, a pause, another
			if err := stream.SendMsg(wrapperspb.String("first")); err != nil {
				return err
			}
			time.Sleep(time.Second)
			return stream.SendMsg(wrapperspb.String("second"))
		}
		return stream.SendMsg(wrapperspb.String(name + " " + method + " " + in.GetValue()))
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

// TestGRPCRouteMatchAndRetry: a GRPCRoute sends one method to v2, whose
// server fails every 5th call with UNAVAILABLE; the route retries that
// code (trailers-only or in trailers after headers) so a real gRPC client
// sees every call succeed; other methods go to the Service itself.
func TestGRPCRouteMatchAndRetry(t *testing.T) {
	res := newMeshResolver()
	web := res.service(webAuthority, grpcServer(t, "web", nil))
	res.service(v2Authority, grpcServer(t, "v2", func(i int64) bool { return i%5 == 0 }))
	tp := startProxyWith(t, Options{Discovery: res}, func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, webAuthority)
	web.Store(&route.Table{Parent: webParent(), GRPC: []route.GRPCRoute{{
		Meta: route.Meta{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute", Namespace: "shop", Name: "echo-get"},
		Rules: []route.GRPCRule{{
			Matches:  []route.GRPCMatch{{Service: "test.Echo", Method: "Get"}},
			Backends: []route.Backend{backend("web-v2", 1)},
			Retry:    &route.Retry{GRPCCodes: []uint32{uint32(codes.Unavailable)}, Limit: 2},
		}},
	}}})
	conn, err := grpc.NewClient("passthrough:///"+tp.bindings[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	invoke := func(method string) (string, error) {
		var out wrapperspb.StringValue
		err := conn.Invoke(ctx, method, wrapperspb.String("hi"), &out)
		return out.GetValue(), err
	}
	const n = 200
	for i := range n {
		got, err := invoke("/test.Echo/Get")
		if err != nil || got != "v2 /test.Echo/Get hi" {
			t.Fatalf("call %d: %q, %v; want v2's answer", i, got, err)
		}
	}
	for range 10 {
		if got, err := invoke("/test.Echo/Put"); err != nil || got != "web /test.Echo/Put hi" {
			t.Fatalf("unmatched method: %q, %v; want the Service's own answer", got, err)
		}
	}
	// A server-streaming call on a route that retries by gRPC code: the
	// proxy's wait for trailers is bounded, the first message is not held
	// back until the stream ends.
	web.Store(&route.Table{Parent: webParent(), Defaults: route.Policy{Retry: &route.Retry{GRPCCodes: []uint32{uint32(codes.Unavailable)}}}})
	start := time.Now()
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.Echo/Stream")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(wrapperspb.String("go")); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var first wrapperspb.StringValue
	if err := stream.RecvMsg(&first); err != nil || first.GetValue() != "first" {
		t.Fatalf("stream: %q, %v", first.GetValue(), err)
	}
	firstAfter := time.Since(start)
	var second wrapperspb.StringValue
	if err := stream.RecvMsg(&second); err != nil || second.GetValue() != "second" {
		t.Fatalf("stream second message: %q, %v", second.GetValue(), err)
	}
	t.Logf("server stream through a retrying route: first message after %v, second after %v", firstAfter.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if firstAfter > 600*time.Millisecond {
		t.Errorf("first streamed message arrived after %v: held back waiting for trailers", firstAfter)
	}

	m := tp.metricsText(t)
	lbl := map[string]string{"route_name": "echo-get", "route_kind": "GRPCRoute", "parent_name": "web"}
	retries := metricValue(t, m, "outbound_grpc_route_retry_requests_total", lbl)
	okCalls := metricValue(t, m, "outbound_grpc_route_request_statuses_total", map[string]string{"route_name": "echo-get", "grpc_status": "OK"})
	unavail := metricValue(t, m, "outbound_grpc_route_backend_response_statuses_total", map[string]string{"route_name": "echo-get", "grpc_status": "UNAVAILABLE", "backend_name": "web-v2"})
	t.Logf("%d gRPC calls against a server failing every 5th: all succeeded; %v retries, %v UNAVAILABLE backend responses", n, retries, unavail)
	if okCalls != n || retries < n/5-5 || unavail != retries {
		t.Errorf("metrics: %v OK calls (want %d), %v retries (want about %d), %v UNAVAILABLE backend responses (want one per retry)", okCalls, n, retries, n/4, unavail)
	}
}
