package metricsapi

import (
	"errors"
	"fmt"
	"time"
)

// DefaultWindow is the time window of a query when none is given
// (Linkerd's `viz stat -t` default).
const DefaultWindow = time.Minute

// StatRequest asks for the golden metrics of resources of one kind.
type StatRequest struct {
	Kind      Kind
	Namespace string // ignored with AllNamespaces; required otherwise except for namespaces
	Name      string // one resource; "" for every resource of the kind
	// AllNamespaces queries every namespace.
	AllNamespaces bool
	Window        time.Duration
	// From / To restrict the metrics to traffic from or to one resource
	// (outbound metrics of the source); at most one of them.
	FromKind, FromName, FromNamespace string
	ToKind, ToName, ToNamespace       string
}

// StatRow is one resource's golden metrics. Metric pointers are nil when
// there was no traffic in the window.
type StatRow struct {
	Namespace string `json:"namespace"`
	Kind      Kind   `json:"kind"`
	Name      string `json:"name"`
	// MeshedPods and TotalPods are the running pods with a proxy and all
	// running pods; -1 when not applicable (services) or unknown.
	MeshedPods     int      `json:"meshedPods"`
	TotalPods      int      `json:"totalPods"`
	SuccessRate    *float64 `json:"successRate,omitempty"` // 0..1
	RPS            *float64 `json:"rps,omitempty"`
	LatencyP50Ms   *float64 `json:"latencyP50Ms,omitempty"`
	LatencyP95Ms   *float64 `json:"latencyP95Ms,omitempty"`
	LatencyP99Ms   *float64 `json:"latencyP99Ms,omitempty"`
	TCPConnections *float64 `json:"tcpConnections,omitempty"`
	// Requests and Successes are the window's response counts (from
	// increase(); not integers), from which SuccessRate and RPS come.
	Requests  float64 `json:"requests"`
	Successes float64 `json:"successes"`
	// SecuredRequests are the requests over mTLS (tls="true").
	SecuredRequests float64 `json:"securedRequests"`
}

// StatResponse is the answer to GET /api/v1/stat.
type StatResponse struct {
	Window string    `json:"window"`
	Rows   []StatRow `json:"rows"`
}

// EdgeRequest asks for the edges between resources of one kind.
type EdgeRequest struct {
	Kind          Kind
	Namespace     string
	AllNamespaces bool
	Window        time.Duration
}

// Endpoint is one side of an edge.
type Endpoint struct {
	Namespace string `json:"namespace"`
	Kind      Kind   `json:"kind"`
	Name      string `json:"name"`
}

// Edge is traffic seen from Src to Dst in the window.
type Edge struct {
	Src Endpoint `json:"src"`
	Dst Endpoint `json:"dst"`
	// ClientID is the source's TLS identity as the destination's proxy
	// saw it; ServerID the destination's as the source's proxy verified it.
	ClientID string `json:"clientId,omitempty"`
	ServerID string `json:"serverId,omitempty"`
	// Secured: the traffic was mTLS (tls="true").
	Secured bool `json:"secured"`
	// NoTLSReason says why not, when not.
	NoTLSReason string `json:"noTlsReason,omitempty"`
}

// EdgesResponse is the answer to GET /api/v1/edges.
type EdgesResponse struct {
	Window string `json:"window"`
	Edges  []Edge `json:"edges"`
}

// NotFoundError is a named resource that does not exist.
type NotFoundError struct {
	Kind            Kind
	Namespace, Name string
}

func (e *NotFoundError) Error() string {
	if e.Kind == KindNamespace {
		return fmt.Sprintf("namespace %q not found", e.Name)
	}
	return fmt.Sprintf("%s/%s not found in namespace %q", e.Kind, e.Name, e.Namespace)
}

// NotMeshedError is a named resource without meshed pods.
type NotMeshedError struct {
	Kind            Kind
	Namespace, Name string
	Detail          string
}

func (e *NotMeshedError) Error() string {
	return fmt.Sprintf("%s/%s in namespace %q is not meshed: %s", e.Kind, e.Name, e.Namespace, e.Detail)
}

// PrometheusError is Prometheus failing to answer.
type PrometheusError struct {
	URL string
	Err error
}

func (e *PrometheusError) Error() string {
	return fmt.Sprintf("Prometheus at %s cannot be queried: %v", e.URL, e.Err)
}

func (e *PrometheusError) Unwrap() error { return e.Err }

// BadRequestError is a request the API cannot answer as asked.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

// errorCode classifies err for the API's JSON error and HTTP status.
func errorCode(err error) (code string, status int) {
	var (
		uk *UnknownKindError
		nf *NotFoundError
		nm *NotMeshedError
		pe *PrometheusError
		br *BadRequestError
	)
	switch {
	case errors.As(err, &uk):
		return "unknown-kind", 400
	case errors.As(err, &br):
		return "bad-request", 400
	case errors.As(err, &nf):
		return "not-found", 404
	case errors.As(err, &nm):
		return "not-meshed", 404
	case errors.As(err, &pe):
		return "prometheus-unavailable", 503
	}
	return "internal", 500
}
