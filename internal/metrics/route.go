package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/compat"
)

// RouteLabels identify an outbound route series: the parent Service port
// and the route (Linkerd's parent_* and route_* labels).
type RouteLabels struct {
	GRPC            bool // the outbound_grpc_route_* family
	ParentNamespace string
	ParentName      string
	ParentPort      string
	RouteGroup      string
	RouteKind       string
	RouteNamespace  string
	RouteName       string
}

func (l RouteLabels) values() []string {
	return []string{compat.RouteParentGroup, compat.RouteParentKind, l.ParentNamespace, l.ParentName, l.ParentPort, "",
		l.RouteGroup, l.RouteKind, l.RouteNamespace, l.RouteName}
}

// BackendLabels identify a route's backend Service port.
type BackendLabels struct {
	Namespace, Name, Port string
}

func (b BackendLabels) values() []string {
	return []string{compat.RouteParentGroup, compat.RouteParentKind, b.Namespace, b.Name, b.Port, ""}
}

var routeLabelNames = []string{
	compat.LabelParentGroup, compat.LabelParentKind, compat.LabelParentNamespace, compat.LabelParentName,
	compat.LabelParentPort, compat.LabelParentSectionName,
	compat.LabelRouteGroup, compat.LabelRouteKind, compat.LabelRouteNamespace, compat.LabelRouteName,
}

var backendLabelNames = append(append([]string{}, routeLabelNames...),
	compat.LabelBackendGroup, compat.LabelBackendKind, compat.LabelBackendNamespace, compat.LabelBackendName,
	compat.LabelBackendPort, compat.LabelBackendSectionName)

// routeFamily is one protocol's (HTTP or gRPC) set of route metrics.
type routeFamily struct {
	duration        *prometheus.HistogramVec
	statuses        *prometheus.CounterVec
	backendRequests *prometheus.CounterVec
	backendDuration *prometheus.HistogramVec
	backendStatuses *prometheus.CounterVec
	retryRequests   *prometheus.CounterVec
	retrySuccesses  *prometheus.CounterVec
	retryLimit      *prometheus.CounterVec
	retryOverflow   *prometheus.CounterVec
}

type routeMetrics struct {
	http, grpc     routeFamily
	mirrorRequests *prometheus.CounterVec
	mirrorDropped  *prometheus.CounterVec

	mu     sync.Mutex // serialises creation
	series sync.Map   // RouteLabels → *RouteSeries; lock-free on the request path
}

func newRouteFamily(cl prometheus.Labels, grpc bool) routeFamily {
	status := compat.LabelHTTPStatus
	n := [9]string{compat.MetricHTTPRouteRequestDuration, compat.MetricHTTPRouteRequestStatuses,
		compat.MetricHTTPRouteBackendRequests, compat.MetricHTTPRouteBackendResponseDuration,
		compat.MetricHTTPRouteBackendResponseStatuses, compat.MetricHTTPRouteRetryRequests,
		compat.MetricHTTPRouteRetrySuccesses, compat.MetricHTTPRouteRetryLimitExceeded, compat.MetricHTTPRouteRetryOverflow}
	if grpc {
		status = compat.LabelRouteGRPCStatus
		n = [9]string{compat.MetricGRPCRouteRequestDuration, compat.MetricGRPCRouteRequestStatuses,
			compat.MetricGRPCRouteBackendRequests, compat.MetricGRPCRouteBackendResponseDuration,
			compat.MetricGRPCRouteBackendResponseStatuses, compat.MetricGRPCRouteRetryRequests,
			compat.MetricGRPCRouteRetrySuccesses, compat.MetricGRPCRouteRetryLimitExceeded, compat.MetricGRPCRouteRetryOverflow}
	}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, labels)
	}
	statusLabels := append(append([]string{}, routeLabelNames...), status, compat.LabelError)
	backendStatusLabels := append(append([]string{}, backendLabelNames...), status, compat.LabelError)
	return routeFamily{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: n[0],
			Help:    "The time between request initialization and response completion.",
			Buckets: compat.RouteRequestDurationBuckets, ConstLabels: cl}, routeLabelNames),
		statuses:        counter(n[1], "Completed request-response streams.", statusLabels),
		backendRequests: counter(n[2], "The total number of requests dispatched.", backendLabelNames),
		backendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: n[3],
			Help:    "The time between request completion and response completion.",
			Buckets: compat.RouteBackendDurationBuckets, ConstLabels: cl}, backendLabelNames),
		backendStatuses: counter(n[4], "Completed responses.", backendStatusLabels),
		retryRequests:   counter(n[5], "Retry requests emitted.", routeLabelNames),
		retrySuccesses:  counter(n[6], "Successful responses to retry requests.", routeLabelNames),
		retryLimit:      counter(n[7], "Retryable requests not sent due to retry limits.", routeLabelNames),
		retryOverflow:   counter(n[8], "Retryable requests not sent due to circuit breakers.", routeLabelNames),
	}
}

func (f routeFamily) collectors() []prometheus.Collector {
	return []prometheus.Collector{f.duration, f.statuses, f.backendRequests, f.backendDuration, f.backendStatuses,
		f.retryRequests, f.retrySuccesses, f.retryLimit, f.retryOverflow}
}

func newRouteMetrics(cl prometheus.Labels) *routeMetrics {
	return &routeMetrics{
		http: newRouteFamily(cl, false),
		grpc: newRouteFamily(cl, true),
		mirrorRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: compat.MetricRouteMirrorRequests,
			Help: "Mirrored copies of requests sent (Weft).", ConstLabels: cl}, backendLabelNames),
		mirrorDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: compat.MetricRouteMirrorDropped,
			Help: "Mirrored copies not sent because too many were in flight (Weft).", ConstLabels: cl}, backendLabelNames),
	}
}

func (m *routeMetrics) collectors() []prometheus.Collector {
	return append(append(m.http.collectors(), m.grpc.collectors()...), m.mirrorRequests, m.mirrorDropped)
}

// RouteSeries is the set of series of one route.
type RouteSeries struct {
	fam      *routeFamily
	m        *routeMetrics
	values   []string
	duration prometheus.Observer
	retries  [4]prometheus.Counter // requests, successes, limit exceeded, overflow
	last     atomic.Int64          // last use, for expiry
}

// Route returns the cached series of a route, creating them on first use.
func (r *Registry) Route(l RouteLabels) *RouteSeries {
	m := r.routes
	if s, ok := m.series.Load(l); ok {
		s := s.(*RouteSeries)
		s.last.Store(r.stamp())
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series.Load(l); ok {
		return s.(*RouteSeries)
	}
	fam := &m.http
	if l.GRPC {
		fam = &m.grpc
	}
	v := l.values()
	s := &RouteSeries{fam: fam, m: m, values: v, duration: fam.duration.WithLabelValues(v...),
		retries: [4]prometheus.Counter{fam.retryRequests.WithLabelValues(v...), fam.retrySuccesses.WithLabelValues(v...),
			fam.retryLimit.WithLabelValues(v...), fam.retryOverflow.WithLabelValues(v...)}}
	s.last.Store(r.stamp())
	m.series.Store(l, s)
	return s
}

// statusValue is the http_status (HTTP) or grpc_status (gRPC) label.
func (s *RouteSeries) statusValue(httpStatus int, grpcStatus string) string {
	if s.fam == &s.m.grpc {
		return GRPCStatusName(grpcStatus)
	}
	if httpStatus <= 0 {
		return ""
	}
	return strconv.Itoa(httpStatus)
}

// Response records a completed request: the status the client saw (its
// gRPC status for the gRPC family), the proxy's error if it made the
// response (compat.RouteError*), and the time from request to response end.
func (s *RouteSeries) Response(httpStatus int, grpcStatus, errLabel string, d time.Duration) {
	s.duration.Observe(d.Seconds())
	s.fam.statuses.WithLabelValues(append(s.values, s.statusValue(httpStatus, grpcStatus), errLabel)...).Inc()
}

// RetryEvent is one of the retry counters.
type RetryEvent int

// Retry events.
const (
	RetryRequest       RetryEvent = iota // a retry was sent
	RetrySuccess                         // a retry succeeded
	RetryLimitExceeded                   // a retryable failure was not retried: limit reached
	RetryOverflow                        // … not retried: the retry budget is spent or the body too large
)

// Retry counts a retry event.
func (s *RouteSeries) Retry(ev RetryEvent) { s.retries[ev].Inc() }

func (s *RouteSeries) backendValues(b BackendLabels) []string {
	return append(append(make([]string, 0, len(backendLabelNames)+2), s.values...), b.values()...)
}

// BackendRequest counts a request (an attempt) dispatched to a backend.
func (s *RouteSeries) BackendRequest(b BackendLabels) {
	s.fam.backendRequests.WithLabelValues(s.backendValues(b)...).Inc()
}

// BackendResponse records a backend's response to one attempt.
func (s *RouteSeries) BackendResponse(b BackendLabels, httpStatus int, grpcStatus, errLabel string, d time.Duration) {
	v := s.backendValues(b)
	s.fam.backendDuration.WithLabelValues(v...).Observe(d.Seconds())
	s.fam.backendStatuses.WithLabelValues(append(v, s.statusValue(httpStatus, grpcStatus), errLabel)...).Inc()
}

// Mirror counts a mirrored copy sent to b, or dropped.
func (s *RouteSeries) Mirror(b BackendLabels, dropped bool) {
	c := s.m.mirrorRequests
	if dropped {
		c = s.m.mirrorDropped
	}
	c.WithLabelValues(s.backendValues(b)...).Inc()
}

var grpcCodeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// GRPCStatusName names a grpc-status value as Linkerd's route metrics do
// (OK, UNAVAILABLE, …); empty or unknown values are UNKNOWN.
func GRPCStatusName(code string) string {
	n, err := strconv.Atoi(code)
	if err != nil || n < 0 || n >= len(grpcCodeNames) {
		return "UNKNOWN"
	}
	return grpcCodeNames[n]
}

// expire removes the series of routes not used since cutoff (a route
// deleted or renamed, a Service no longer called) and returns how many
// routes it removed.
func (m *routeMetrics) expire(cutoff int64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	m.series.Range(func(k, v any) bool {
		s := v.(*RouteSeries)
		if s.last.Load() >= cutoff {
			return true
		}
		l := prometheus.Labels{}
		for i, name := range routeLabelNames {
			l[name] = s.values[i]
		}
		for _, c := range s.fam.collectorsVec() {
			c.DeletePartialMatch(l)
		}
		m.mirrorRequests.DeletePartialMatch(l)
		m.mirrorDropped.DeletePartialMatch(l)
		m.series.Delete(k)
		n++
		return true
	})
	return n
}

// deleter is a metric vector that can drop label sets.
type deleter interface {
	DeletePartialMatch(prometheus.Labels) int
}

func (f *routeFamily) collectorsVec() []deleter {
	return []deleter{f.duration, f.statuses, f.backendRequests, f.backendDuration, f.backendStatuses,
		f.retryRequests, f.retrySuccesses, f.retryLimit, f.retryOverflow}
}
