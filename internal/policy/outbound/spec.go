package outbound

import (
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// Kinds and groups of the routes the index reads.
const (
	GroupGateway = "gateway.networking.k8s.io"
	GroupLinkerd = compat.PolicyGroup
	KindHTTP     = "HTTPRoute"
	KindGRPC     = "GRPCRoute"
)

// Route is a route object as the index reads it: its identity and the
// parts of its spec that matter, decoded from the API object (the Gateway
// API's field names; policy.linkerd.io HTTPRoute has the same shape).
type Route struct {
	Group, Kind     string
	Namespace, Name string
	Generation      int64
	Created         time.Time
	Annotations     map[string]string
	Spec            RouteSpec
	// Status is the object's status.parents, as read (to keep other
	// controllers' entries and our transition times).
	Status []RouteParentStatus
}

// Key names a route uniquely across groups and kinds.
func (r *Route) Key() string { return r.Group + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name }

// RouteSpec is the spec of an HTTPRoute or GRPCRoute.
type RouteSpec struct {
	ParentRefs []ParentRef `json:"parentRefs,omitempty"`
	Hostnames  []string    `json:"hostnames,omitempty"`
	Rules      []RuleSpec  `json:"rules,omitempty"`
}

// ParentRef is a Gateway API ParentReference.
type ParentRef struct {
	Group       *string `json:"group,omitempty"`
	Kind        *string `json:"kind,omitempty"`
	Namespace   *string `json:"namespace,omitempty"`
	Name        string  `json:"name"`
	SectionName *string `json:"sectionName,omitempty"`
	Port        *int32  `json:"port,omitempty"`
}

// RuleSpec is one rule of either kind: HTTP matches and GRPC matches have
// different shapes, the rest is shared.
type RuleSpec struct {
	Name        *string         `json:"name,omitempty"`
	Matches     []MatchSpec     `json:"matches,omitempty"`
	Filters     []FilterSpec    `json:"filters,omitempty"`
	BackendRefs []BackendRefDef `json:"backendRefs,omitempty"`
	Timeouts    *TimeoutsSpec   `json:"timeouts,omitempty"`
	Retry       *RetrySpec      `json:"retry,omitempty"`
}

// MatchSpec holds an HTTPRouteMatch or a GRPCRouteMatch: Method is a
// string for HTTP and an object for gRPC, so it is kept raw.
type MatchSpec struct {
	Path        *PathSpec   `json:"path,omitempty"`
	Headers     []ValueSpec `json:"headers,omitempty"`
	QueryParams []ValueSpec `json:"queryParams,omitempty"`
	Method      any         `json:"method,omitempty"`
}

// PathSpec is an HTTPPathMatch.
type PathSpec struct {
	Type  *string `json:"type,omitempty"`
	Value *string `json:"value,omitempty"`
}

// ValueSpec is a header or query parameter match.
type ValueSpec struct {
	Type  *string `json:"type,omitempty"`
	Name  string  `json:"name"`
	Value string  `json:"value"`
}

// FilterSpec is an HTTPRouteFilter or GRPCRouteFilter.
type FilterSpec struct {
	Type                   string              `json:"type"`
	RequestHeaderModifier  *HeaderModifierSpec `json:"requestHeaderModifier,omitempty"`
	ResponseHeaderModifier *HeaderModifierSpec `json:"responseHeaderModifier,omitempty"`
	RequestRedirect        *RedirectSpec       `json:"requestRedirect,omitempty"`
	URLRewrite             *RewriteSpec        `json:"urlRewrite,omitempty"`
	RequestMirror          *MirrorSpec         `json:"requestMirror,omitempty"`
}

// HeaderModifierSpec is an HTTPHeaderFilter.
type HeaderModifierSpec struct {
	Set    []HeaderSpec `json:"set,omitempty"`
	Add    []HeaderSpec `json:"add,omitempty"`
	Remove []string     `json:"remove,omitempty"`
}

// HeaderSpec is an HTTPHeader.
type HeaderSpec struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// PathModifierSpec is an HTTPPathModifier.
type PathModifierSpec struct {
	Type               string  `json:"type"`
	ReplaceFullPath    *string `json:"replaceFullPath,omitempty"`
	ReplacePrefixMatch *string `json:"replacePrefixMatch,omitempty"`
}

// RedirectSpec is an HTTPRequestRedirectFilter.
type RedirectSpec struct {
	Scheme     *string           `json:"scheme,omitempty"`
	Hostname   *string           `json:"hostname,omitempty"`
	Path       *PathModifierSpec `json:"path,omitempty"`
	Port       *int32            `json:"port,omitempty"`
	StatusCode *int              `json:"statusCode,omitempty"`
}

// RewriteSpec is an HTTPURLRewriteFilter.
type RewriteSpec struct {
	Hostname *string           `json:"hostname,omitempty"`
	Path     *PathModifierSpec `json:"path,omitempty"`
}

// MirrorSpec is an HTTPRequestMirrorFilter.
type MirrorSpec struct {
	BackendRef BackendObjectRef `json:"backendRef"`
	Percent    *int32           `json:"percent,omitempty"`
	Fraction   *FractionSpec    `json:"fraction,omitempty"`
}

// FractionSpec is a Gateway API Fraction.
type FractionSpec struct {
	Numerator   int32  `json:"numerator"`
	Denominator *int32 `json:"denominator,omitempty"`
}

// BackendObjectRef names a backend object.
type BackendObjectRef struct {
	Group     *string `json:"group,omitempty"`
	Kind      *string `json:"kind,omitempty"`
	Name      string  `json:"name"`
	Namespace *string `json:"namespace,omitempty"`
	Port      *int32  `json:"port,omitempty"`
}

// BackendRefDef is an HTTPBackendRef or GRPCBackendRef.
type BackendRefDef struct {
	BackendObjectRef `json:",inline"`
	Weight           *int32       `json:"weight,omitempty"`
	Filters          []FilterSpec `json:"filters,omitempty"`
}

// TimeoutsSpec is an HTTPRouteTimeouts.
type TimeoutsSpec struct {
	Request        *string `json:"request,omitempty"`
	BackendRequest *string `json:"backendRequest,omitempty"`
}

// RetrySpec is the Gateway API's HTTPRouteRetry (experimental channel).
type RetrySpec struct {
	Codes    []int   `json:"codes,omitempty"`
	Attempts *int    `json:"attempts,omitempty"`
	Backoff  *string `json:"backoff,omitempty"`
}

// RouteParentStatus is a Gateway API RouteParentStatus.
type RouteParentStatus struct {
	ParentRef      ParentRef   `json:"parentRef"`
	ControllerName string      `json:"controllerName"`
	Conditions     []Condition `json:"conditions,omitempty"`
}

// Condition is a metav1.Condition, as JSON.
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime"`
	Reason             string `json:"reason"`
	Message            string `json:"message"`
}
