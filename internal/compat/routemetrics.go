package compat

// Linkerd's outbound route metrics (proxy 2.15+), HTTPRoute and GRPCRoute
// families, with their labels. Counter names include the _total suffix.
const (
	MetricHTTPRouteRequestDuration         = "outbound_http_route_request_duration_seconds"
	MetricHTTPRouteRequestStatuses         = "outbound_http_route_request_statuses_total"
	MetricHTTPRouteBackendRequests         = "outbound_http_route_backend_requests_total"
	MetricHTTPRouteBackendResponseDuration = "outbound_http_route_backend_response_duration_seconds"
	MetricHTTPRouteBackendResponseStatuses = "outbound_http_route_backend_response_statuses_total"
	MetricHTTPRouteRetryRequests           = "outbound_http_route_retry_requests_total"
	MetricHTTPRouteRetrySuccesses          = "outbound_http_route_retry_successes_total"
	MetricHTTPRouteRetryLimitExceeded      = "outbound_http_route_retry_limit_exceeded_total"
	MetricHTTPRouteRetryOverflow           = "outbound_http_route_retry_overflow_total"

	MetricGRPCRouteRequestDuration         = "outbound_grpc_route_request_duration_seconds"
	MetricGRPCRouteRequestStatuses         = "outbound_grpc_route_request_statuses_total"
	MetricGRPCRouteBackendRequests         = "outbound_grpc_route_backend_requests_total"
	MetricGRPCRouteBackendResponseDuration = "outbound_grpc_route_backend_response_duration_seconds"
	MetricGRPCRouteBackendResponseStatuses = "outbound_grpc_route_backend_response_statuses_total"
	MetricGRPCRouteRetryRequests           = "outbound_grpc_route_retry_requests_total"
	MetricGRPCRouteRetrySuccesses          = "outbound_grpc_route_retry_successes_total"
	MetricGRPCRouteRetryLimitExceeded      = "outbound_grpc_route_retry_limit_exceeded_total"
	MetricGRPCRouteRetryOverflow           = "outbound_grpc_route_retry_overflow_total"

	// Weft's own (Linkerd has no request mirroring): mirrored copies sent
	// and copies dropped because too many were in flight.
	MetricRouteMirrorRequests = "outbound_route_mirror_requests_total"
	MetricRouteMirrorDropped  = "outbound_route_mirror_dropped_total"
)

// Route metric labels.
const (
	LabelParentGroup        = "parent_group"
	LabelParentKind         = "parent_kind"
	LabelParentNamespace    = "parent_namespace"
	LabelParentName         = "parent_name"
	LabelParentPort         = "parent_port"
	LabelParentSectionName  = "parent_section_name"
	LabelRouteGroup         = "route_group"
	LabelRouteKind          = "route_kind"
	LabelRouteNamespace     = "route_namespace"
	LabelRouteName          = "route_name"
	LabelBackendGroup       = "backend_group"
	LabelBackendKind        = "backend_kind"
	LabelBackendNamespace   = "backend_namespace"
	LabelBackendName        = "backend_name"
	LabelBackendPort        = "backend_port"
	LabelBackendSectionName = "backend_section_name"
	LabelHTTPStatus         = "http_status"
	LabelRouteGRPCStatus    = "grpc_status" // a code name: OK, UNAVAILABLE, …
	LabelError              = "error"
)

// Values of the route metrics' error label.
const (
	RouteErrorRequestTimeout  = "REQUEST_TIMEOUT"
	RouteErrorResponseTimeout = "RESPONSE_HEADERS_TIMEOUT"
	RouteErrorFailFast        = "FAIL_FAST"
	RouteErrorUnexpected      = "UNEXPECTED"
)

// Label values of a parent Service and of a request no route matched.
const (
	RouteParentGroup = "core"
	RouteParentKind  = "Service"
	RouteKindDefault = "default"
)

// RouteRequestDurationBuckets and RouteBackendDurationBuckets are the
// histogram bounds of the route and route-backend duration metrics, in
// seconds.
var (
	RouteRequestDurationBuckets = []float64{0.05, 0.5, 1, 10}
	RouteBackendDurationBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 10}
)
