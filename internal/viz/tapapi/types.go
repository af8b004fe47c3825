// Package tapapi is the tap server's HTTP API (weft-controller tap, in
// tapserver): the request, the JSON-lines events with Linkerd's line
// format, and the Go client the CLI uses. It imports nothing of the
// control plane.
package tapapi

import (
	"fmt"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
	"strings"
	"time"
)

// APIGroup and the verb and subresource authorized, as Linkerd's.
const (
	APIGroup    = compat.TapAPIGroup
	APIVersion  = "v1alpha1"
	Verb        = "watch"
	Subresource = "tap"
	// TokenHeader carries the caller's bearer token when the request comes
	// through the Kubernetes API server's service proxy, which consumes
	// the Authorization header.
	TokenHeader = "Weft-Tap-Authorization"
)

// Path is the URL path of a tap of one resource ("" name: every resource
// of the kind in the namespace; namespaces are tapped as
// namespaces/<name>), shaped like Linkerd's aggregated API path.
func Path(namespace, plural, name string) string {
	if plural == "namespaces" {
		return fmt.Sprintf("/apis/%s/%s/watch/namespaces/%s/tap", APIGroup, APIVersion, name)
	}
	return fmt.Sprintf("/apis/%s/%s/watch/namespaces/%s/%s/%s/tap", APIGroup, APIVersion, namespace, plural, name)
}

// Request is a tap's body.
type Request struct {
	// To restricts the tap to requests toward this resource (kind/name,
	// in ToNamespace, default the tapped resource's namespace).
	To          string  `json:"to,omitempty"`
	ToNamespace string  `json:"toNamespace,omitempty"`
	Method      string  `json:"method,omitempty"`
	Path        string  `json:"path,omitempty"` // prefix
	Authority   string  `json:"authority,omitempty"`
	MaxRPS      float64 `json:"maxRps,omitempty"`
}

// Event is one line of a tap's stream: a request's init, its response's
// init, its end, or an error of one pod's tap.
type Event struct {
	ID          string        `json:"id"` // <pod index>:<request number>
	Pod         string        `json:"pod,omitempty"`
	Namespace   string        `json:"namespace,omitempty"`
	Direction   string        `json:"proxyDirection,omitempty"` // INBOUND or OUTBOUND, as Linkerd's JSON
	Source      string        `json:"source,omitempty"`
	Destination string        `json:"destination,omitempty"`
	TLS         bool          `json:"tls"`
	ClientID    string        `json:"clientId,omitempty"`
	ServerID    string        `json:"serverId,omitempty"`
	Time        time.Time     `json:"time"`
	RequestInit *RequestInit  `json:"requestInitEvent,omitempty"`
	ResponseIn  *ResponseInit `json:"responseInitEvent,omitempty"`
	ResponseEnd *ResponseEnd  `json:"responseEndEvent,omitempty"`
	// Error reports a pod whose tap failed (the stream goes on with the others).
	Error string `json:"error,omitempty"`
}

type RequestInit struct {
	Method      string   `json:"method"`
	Scheme      string   `json:"scheme"`
	Authority   string   `json:"authority"`
	Path        string   `json:"path"`
	HeaderNames []string `json:"headerNames,omitempty"`
}

type ResponseInit struct {
	HTTPStatus       int           `json:"httpStatus"`
	SinceRequestInit time.Duration `json:"sinceRequestInit"`
	HeaderNames      []string      `json:"headerNames,omitempty"`
}

type ResponseEnd struct {
	SinceRequestInit  time.Duration `json:"sinceRequestInit"`
	SinceResponseInit time.Duration `json:"sinceResponseInit"`
	ResponseBytes     uint64        `json:"responseBytes"`
	GRPCStatus        *uint32       `json:"grpcStatus,omitempty"`
	Error             string        `json:"error,omitempty"`
}

// Line renders e as Linkerd's tap prints it (`req id=0:1 proxy=in src=…`),
// or "" for an error event.
func (e *Event) Line() string {
	var b strings.Builder
	dir := "in "
	if e.Direction == "OUTBOUND" {
		dir = "out"
	}
	tls := "true"
	if !e.TLS {
		tls = "no_identity"
	}
	head := func(kind string) {
		fmt.Fprintf(&b, "%s id=%s proxy=%s src=%s dst=%s tls=%s", kind, e.ID, dir, e.Source, e.Destination, tls)
	}
	switch {
	case e.RequestInit != nil:
		r := e.RequestInit
		head("req")
		fmt.Fprintf(&b, " :method=%s :authority=%s :path=%s", r.Method, r.Authority, r.Path)
	case e.ResponseIn != nil:
		head("rsp")
		fmt.Fprintf(&b, " :status=%d latency=%dµs", e.ResponseIn.HTTPStatus, e.ResponseIn.SinceRequestInit.Microseconds())
	case e.ResponseEnd != nil:
		r := e.ResponseEnd
		head("end")
		if r.Error != "" {
			fmt.Fprintf(&b, " error=%q", r.Error)
		} else if r.GRPCStatus != nil {
			fmt.Fprintf(&b, " grpc-status=%s", grpcStatusName(*r.GRPCStatus))
		}
		fmt.Fprintf(&b, " duration=%dµs response-length=%dB", r.SinceResponseInit.Microseconds(), r.ResponseBytes)
	default:
		return ""
	}
	return b.String()
}

var grpcNames = []string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
	"PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented", "Internal",
	"Unavailable", "DataLoss", "Unauthenticated"}

func grpcStatusName(c uint32) string {
	if int(c) < len(grpcNames) {
		return grpcNames[c]
	}
	return fmt.Sprint(c)
}

// plurals are the resource names of the tap paths, by kind.
var plurals = map[metricsapi.Kind]string{
	metricsapi.KindNamespace: "namespaces", metricsapi.KindDeployment: "deployments",
	metricsapi.KindStatefulSet: "statefulsets", metricsapi.KindDaemonSet: "daemonsets",
	metricsapi.KindJob: "jobs", metricsapi.KindPod: "pods", metricsapi.KindService: "services",
}

// Plural returns the kind's resource name in tap paths and RBAC.
func Plural(k metricsapi.Kind) string { return plurals[k] }

// KindOfPlural is the kind whose plural is p.
func KindOfPlural(p string) (metricsapi.Kind, bool) {
	for k, v := range plurals {
		if v == p {
			return k, true
		}
	}
	return "", false
}
