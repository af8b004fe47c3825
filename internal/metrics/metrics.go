// Package metrics holds the proxy's Prometheus metrics under Linkerd's names
// and labels (request_total, response_total, response_latency_ms, the tcp_*
// family, process metrics, proxy_build_info). Series handles are cached per
// label set so the hot path does no label hashing, and series that stay idle
// longer than a configured timeout are removed to bound cardinality.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/weftmesh/weft/internal/compat"
)

// Target identifies the traffic a series counts: which way it flows, where it
// goes, and how it is secured.
type Target struct {
	Direction string // compat.Inbound or compat.Outbound
	Authority string // logical destination (host:port); empty for opaque TCP
	Addr      string // target_addr: the endpoint dialed (outbound) or the local port (inbound)
	TLS       string // compat.TLSTrue, compat.TLSNoIdentity, compat.TLSDisabled
	NoTLS     string // no_tls_reason when TLS is not "true"
	ServerID  string // peer identity verified by an outbound client
	ClientID  string // peer identity presented to an inbound server
	Dst       DstLabels
}

// DstLabels are the values of compat.DstLabels, in that order (outbound
// series; empty values are not exported).
type DstLabels [len(compat.DstLabels)]string

// dstIndex maps a dst_* label name to its place in DstLabels.
var dstIndex = func() map[string]int {
	m := make(map[string]int, len(compat.DstLabels))
	for i, n := range compat.DstLabels {
		m[n] = i
	}
	return m
}()

// DstOf picks the dst_* labels out of discovery's metric labels; others
// are ignored.
func DstOf(labels map[string]string) DstLabels {
	var d DstLabels
	for k, v := range labels {
		if i, ok := dstIndex[k]; ok {
			d[i] = v
		}
	}
	return d
}

func (t Target) values() []string {
	return append([]string{t.Direction, t.Authority, t.Addr, t.TLS, t.NoTLS, t.ServerID, t.ClientID}, t.Dst[:]...)
}

var targetLabels = append([]string{
	compat.LabelDirection, compat.LabelAuthority, compat.LabelTargetAddr, compat.LabelTLS,
	compat.LabelNoTLSReason, compat.LabelServerID, compat.LabelClientID,
}, compat.DstLabels[:]...)

// Registry is the proxy's metrics registry.
type Registry struct {
	reg  *prometheus.Registry
	idle time.Duration
	now  func() time.Time

	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	latency   *prometheus.HistogramVec

	tcpOpen     *prometheus.CounterVec
	tcpClose    *prometheus.CounterVec
	tcpOpenConn *prometheus.GaugeVec
	tcpRead     *prometheus.CounterVec
	tcpWrite    *prometheus.CounterVec
	tcpDuration *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	routes      *routeMetrics

	mu   sync.Mutex // guards the maps below against the janitor
	http map[Target]*HTTPSeries
	tcp  map[tcpKey]*TCPSeries
}

// Options configure a Registry.
type Options struct {
	// ConstLabels are added to every proxy series (e.g. the pod's namespace and name).
	ConstLabels map[string]string
	// IdleTimeout removes series not touched for this long (0: never).
	IdleTimeout time.Duration
	// BuildVersion is reported by proxy_build_info.
	BuildVersion string
}

// New creates a Registry with process and Go runtime collectors.
func New(o Options) *Registry {
	cl := prometheus.Labels(o.ConstLabels)
	r := &Registry{
		reg:  prometheus.NewRegistry(),
		idle: o.IdleTimeout,
		now:  time.Now,
		http: map[Target]*HTTPSeries{},
		tcp:  map[tcpKey]*TCPSeries{},
	}
	respLabels := append(append([]string{}, targetLabels...),
		compat.LabelStatusCode, compat.LabelGRPCStatus, compat.LabelClassification)
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: compat.MetricRequestTotal, Help: "Total count of HTTP requests.", ConstLabels: cl,
	}, targetLabels)
	r.responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: compat.MetricResponseTotal, Help: "Total count of HTTP responses.", ConstLabels: cl,
	}, respLabels)
	r.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: compat.MetricResponseLatencyMs, Help: "Elapsed times between a request's headers being received and its response's headers being sent, in milliseconds.",
		Buckets: compat.ResponseLatencyBucketsMs, ConstLabels: cl,
	}, respLabels[:len(respLabels)-1])
	tcpLabels := append(append([]string{}, targetLabels...), compat.LabelPeer)
	closeLabels := append(append([]string{}, tcpLabels...), compat.LabelClassification, compat.LabelErrno)
	r.tcpOpen = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: compat.MetricTCPOpenTotal, Help: "Total count of opened connections.", ConstLabels: cl,
	}, tcpLabels)
	r.tcpClose = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: compat.MetricTCPCloseTotal, Help: "Total count of closed connections.", ConstLabels: cl,
	}, closeLabels)
	r.tcpOpenConn = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: compat.MetricTCPOpenConnections, Help: "Number of currently-open connections.", ConstLabels: cl,
	}, tcpLabels)
	r.tcpRead = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: compat.MetricTCPReadBytesTotal, Help: "Total count of bytes read from peers.", ConstLabels: cl,
	}, tcpLabels)
	r.tcpWrite = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: compat.MetricTCPWriteBytesTotal, Help: "Total count of bytes written to peers.", ConstLabels: cl,
	}, tcpLabels)
	r.tcpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: compat.MetricTCPConnectionDuration, Help: "Connection lifetimes, in milliseconds.",
		Buckets: compat.ResponseLatencyBucketsMs, ConstLabels: cl,
	}, closeLabels)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: compat.MetricProxyBuildInfo, Help: "Proxy build info.", ConstLabels: cl,
	}, []string{"version", "vendor"})
	build.WithLabelValues(o.BuildVersion, "weft").Set(1)
	// Weft's own (Linkerd's proxy names retries differently per version):
	// attempts beyond the first, per logical destination.
	r.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "request_retry_total", Help: "Total count of HTTP request retries (attempts beyond the first), by logical destination.", ConstLabels: cl,
	}, []string{compat.LabelDirection, "dst"})
	r.routes = newRouteMetrics(cl)
	r.reg.MustRegister(r.routes.collectors()...)
	r.reg.MustRegister(r.requests, r.responses, r.latency, r.tcpOpen, r.tcpClose, r.tcpOpenConn,
		r.tcpRead, r.tcpWrite, r.tcpDuration, r.retries, build,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector())
	return r
}

// Retry counts one retry of a request to dst (a logical destination: a
// service authority or an original destination address, bounded like the
// destinations the proxy resolves).
func (r *Registry) Retry(direction, dst string) { r.retries.WithLabelValues(direction, dst).Inc() }

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return textHandler{r.reg}
}

// Gatherer exposes the registry for tests and in-process readers.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Register adds an extra collector (e.g. identity metrics) to the registry.
func (r *Registry) Register(c prometheus.Collector) error { return r.reg.Register(c) }

// stamp is a coarse clock for idle tracking, refreshed by callers of touch.
func (r *Registry) stamp() int64 { return r.now().UnixNano() }

// HTTPSeries is the set of HTTP series for one Target.
type HTTPSeries struct {
	r        *Registry
	target   Target
	requests prometheus.Counter
	last     atomic.Int64

	mu    sync.Mutex
	resps map[respKey]*respSeries
}

type respKey struct {
	status int
	grpc   string
	ok     bool
}

type respSeries struct {
	total   prometheus.Counter
	latency prometheus.Observer
}

// HTTP returns the cached series for t, creating them on first use.
func (r *Registry) HTTP(t Target) *HTTPSeries {
	r.mu.Lock()
	s := r.http[t]
	if s == nil {
		s = &HTTPSeries{r: r, target: t, requests: r.requests.WithLabelValues(t.values()...), resps: map[respKey]*respSeries{}}
		r.http[t] = s
	}
	r.mu.Unlock()
	s.last.Store(r.stamp())
	return s
}

// Request counts one request.
func (s *HTTPSeries) Request() { s.requests.Inc() }

// Response counts a response with its status, gRPC status (empty if none),
// classification and time to response headers.
func (s *HTTPSeries) Response(status int, grpcStatus string, success bool, latency time.Duration) {
	k := respKey{status, grpcStatus, success}
	s.mu.Lock()
	rs := s.resps[k]
	if rs == nil {
		code := ""
		if status > 0 {
			code = strconv.Itoa(status)
		}
		class := "failure"
		if success {
			class = "success"
		}
		v := append(s.target.values(), code, grpcStatus)
		rs = &respSeries{
			total:   s.r.responses.WithLabelValues(append(v, class)...),
			latency: s.r.latency.WithLabelValues(v...),
		}
		s.resps[k] = rs
	}
	s.mu.Unlock()
	rs.total.Inc()
	rs.latency.Observe(float64(latency) / float64(time.Millisecond))
	s.last.Store(s.r.stamp())
}

type tcpKey struct {
	Target
	peer string
}

// TCPSeries is the set of tcp_* series for one Target and peer ("src" for
// the accepted side, "dst" for the dialed side).
type TCPSeries struct {
	r     *Registry
	key   tcpKey
	open  prometheus.Counter
	conns prometheus.Gauge
	read  prometheus.Counter
	write prometheus.Counter
	last  atomic.Int64
	live  atomic.Int64 // open connections, so expiry keeps live series
}

// TCP returns the cached tcp series for t and peer.
func (r *Registry) TCP(t Target, peer string) *TCPSeries {
	k := tcpKey{t, peer}
	r.mu.Lock()
	s := r.tcp[k]
	if s == nil {
		v := append(t.values(), peer)
		s = &TCPSeries{r: r, key: k,
			open:  r.tcpOpen.WithLabelValues(v...),
			conns: r.tcpOpenConn.WithLabelValues(v...),
			read:  r.tcpRead.WithLabelValues(v...),
			write: r.tcpWrite.WithLabelValues(v...),
		}
		r.tcp[k] = s
	}
	r.mu.Unlock()
	s.last.Store(r.stamp())
	return s
}

// Open records a connection opening.
func (s *TCPSeries) Open() {
	s.open.Inc()
	s.conns.Inc()
	s.live.Add(1)
}

// Close records a connection closing after d with the bytes moved; errno is
// empty for a clean close.
func (s *TCPSeries) Close(d time.Duration, read, written int64, errno string) {
	s.conns.Dec()
	s.live.Add(-1)
	s.read.Add(float64(read))
	s.write.Add(float64(written))
	class := "success"
	if errno != "" {
		class = "failure"
	}
	v := append(s.key.values(), s.key.peer, class, errno)
	s.r.tcpClose.WithLabelValues(v...).Inc()
	s.r.tcpDuration.WithLabelValues(v...).Observe(float64(d) / float64(time.Millisecond))
	s.last.Store(s.r.stamp())
}

// Expire removes series idle for longer than the idle timeout and returns how
// many label sets were removed. Series with open connections are kept.
func (r *Registry) Expire() int {
	if r.idle <= 0 {
		return 0
	}
	cutoff := r.now().Add(-r.idle).UnixNano()
	n := r.routes.expire(cutoff)
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, s := range r.http {
		if s.last.Load() >= cutoff {
			continue
		}
		r.requests.DeleteLabelValues(t.values()...)
		r.responses.DeletePartialMatch(labelsOf(t))
		r.latency.DeletePartialMatch(labelsOf(t))
		delete(r.http, t)
		n++
	}
	for k, s := range r.tcp {
		if s.last.Load() >= cutoff || s.live.Load() > 0 {
			continue
		}
		l := labelsOf(k.Target)
		l[compat.LabelPeer] = k.peer
		r.tcpOpen.DeletePartialMatch(l)
		r.tcpClose.DeletePartialMatch(l)
		r.tcpOpenConn.DeletePartialMatch(l)
		r.tcpRead.DeletePartialMatch(l)
		r.tcpWrite.DeletePartialMatch(l)
		r.tcpDuration.DeletePartialMatch(l)
		delete(r.tcp, k)
		n++
	}
	return n
}

// RunExpiry calls Expire every interval until stop is closed.
func (r *Registry) RunExpiry(stop <-chan struct{}, interval time.Duration) {
	if r.idle <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			r.Expire()
		}
	}
}

func labelsOf(t Target) prometheus.Labels {
	l := prometheus.Labels{}
	v := t.values()
	for i, name := range targetLabels {
		l[name] = v[i]
	}
	return l
}

// SeriesCount reports how many HTTP and TCP label sets are cached (for tests).
func (r *Registry) SeriesCount() (httpSets, tcpSets int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.http), len(r.tcp)
}
