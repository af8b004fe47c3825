package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRouteMetricNamesAndLabels: the exposition matches Linkerd's route
// metrics (names, label sets, gRPC status names).
func TestRouteMetricNamesAndLabels(t *testing.T) {
	r := New(Options{})
	l := RouteLabels{GRPC: true, ParentNamespace: "schlep", ParentName: "api", ParentPort: "8080",
		RouteGroup: "gateway.networking.k8s.io", RouteKind: "GRPCRoute", RouteNamespace: "schlep", RouteName: "api-get"}
	s := r.Route(l)
	if r.Route(l) != s {
		t.Error("series not cached per label set")
	}
	b := BackendLabels{Namespace: "schlep", Name: "api", Port: "8080"}
	s.BackendRequest(b)
	s.BackendResponse(b, 200, "14", "", 30*time.Millisecond)
	s.Response(200, "0", "", 40*time.Millisecond)
	s.Retry(RetryRequest)
	h := r.Route(RouteLabels{ParentNamespace: "shop", ParentName: "web", ParentPort: "80", RouteKind: "default", RouteName: "http"})
	h.Response(504, "", "REQUEST_TIMEOUT", time.Second)

	want := `
# HELP outbound_grpc_route_backend_response_statuses_total Completed responses.
# TYPE outbound_grpc_route_backend_response_statuses_total counter
outbound_grpc_route_backend_response_statuses_total{backend_group="core",backend_kind="Service",backend_name="api",backend_namespace="schlep",backend_port="8080",backend_section_name="",error="",grpc_status="UNAVAILABLE",parent_group="core",parent_kind="Service",parent_name="api",parent_namespace="schlep",parent_port="8080",parent_section_name="",route_group="gateway.networking.k8s.io",route_kind="GRPCRoute",route_name="api-get",route_namespace="schlep"} 1
# HELP outbound_grpc_route_request_statuses_total Completed request-response streams.
# TYPE outbound_grpc_route_request_statuses_total counter
outbound_grpc_route_request_statuses_total{error="",grpc_status="OK",parent_group="core",parent_kind="Service",parent_name="api",parent_namespace="schlep",parent_port="8080",parent_section_name="",route_group="gateway.networking.k8s.io",route_kind="GRPCRoute",route_name="api-get",route_namespace="schlep"} 1
# HELP outbound_grpc_route_retry_requests_total Retry requests emitted.
# TYPE outbound_grpc_route_retry_requests_total counter
outbound_grpc_route_retry_requests_total{parent_group="core",parent_kind="Service",parent_name="api",parent_namespace="schlep",parent_port="8080",parent_section_name="",route_group="gateway.networking.k8s.io",route_kind="GRPCRoute",route_name="api-get",route_namespace="schlep"} 1
# HELP outbound_http_route_request_statuses_total Completed request-response streams.
# TYPE outbound_http_route_request_statuses_total counter
outbound_http_route_request_statuses_total{error="REQUEST_TIMEOUT",http_status="504",parent_group="core",parent_kind="Service",parent_name="web",parent_namespace="shop",parent_port="80",parent_section_name="",route_group="",route_kind="default",route_name="http",route_namespace=""} 1
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want),
		"outbound_grpc_route_backend_response_statuses_total", "outbound_grpc_route_request_statuses_total",
		"outbound_grpc_route_retry_requests_total", "outbound_http_route_request_statuses_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(r.routes.grpc.duration); n != 1 {
		t.Errorf("grpc request duration series = %d, want 1", n)
	}
}

func TestGRPCStatusName(t *testing.T) {
	tests := []struct{ in, want string }{{"0", "OK"}, {"14", "UNAVAILABLE"}, {"16", "UNAUTHENTICATED"}, {"", "UNKNOWN"}, {"99", "UNKNOWN"}, {"x", "UNKNOWN"}}
	for _, tt := range tests {
		if got := GRPCStatusName(tt.in); got != tt.want {
			t.Errorf("GRPCStatusName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestIdleRouteSeriesExpire: a route no longer used (deleted, renamed)
// loses its series after the idle timeout; a used one keeps them.
func TestIdleRouteSeriesExpire(t *testing.T) {
	clock := time.Unix(1000, 0)
	r := New(Options{IdleTimeout: time.Minute})
	r.now = func() time.Time { return clock }
	b := BackendLabels{Namespace: "shop", Name: "web-v1", Port: "80"}
	old := r.Route(RouteLabels{ParentName: "web", RouteKind: "HTTPRoute", RouteName: "old"})
	old.BackendRequest(b)
	old.BackendResponse(b, 200, "", "", time.Millisecond)
	old.Response(200, "", "", time.Millisecond)
	old.Mirror(b, false)
	clock = clock.Add(2 * time.Minute)
	fresh := r.Route(RouteLabels{ParentName: "web", RouteKind: "HTTPRoute", RouteName: "fresh"})
	fresh.Response(200, "", "", time.Millisecond)
	if n := r.Expire(); n != 1 {
		t.Errorf("Expire removed %d label sets, want 1 (the old route)", n)
	}
	for name, c := range map[string]prometheus.Collector{
		"statuses": r.routes.http.statuses, "backend requests": r.routes.http.backendRequests,
		"backend statuses": r.routes.http.backendStatuses, "mirror": r.routes.mirrorRequests,
	} {
		want := 0
		if name == "statuses" {
			want = 1 // fresh
		}
		if got := testutil.CollectAndCount(c); got != want {
			t.Errorf("%s series after expiry = %d, want %d", name, got, want)
		}
	}
	if r.Route(RouteLabels{ParentName: "web", RouteKind: "HTTPRoute", RouteName: "fresh"}) != fresh {
		t.Error("the fresh route's series were replaced")
	}
}
