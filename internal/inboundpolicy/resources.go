// Package inboundpolicy is the control plane's inbound policy: an index of
// Linkerd's policy resources (Server, ServerAuthorization,
// AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication,
// HTTPRoute with a Server parent, HTTPLocalRateLimitPolicy), pods and
// namespaces, which computes the policy of a pod's port
// (internal/authz's PortPolicy); the informers that feed it and report
// invalid resources as Events (kube.go); and the InboundPolicies gRPC
// service that streams a port's policy to its proxy (server.go).
package inboundpolicy

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/internal/compat"
)

// Group is Linkerd's policy API group.
const Group = compat.PolicyGroup

// The resources the index reads, at the versions it reads them.
var (
	ServersGVR         = schema.GroupVersionResource{Group: Group, Version: "v1beta3", Resource: "servers"}
	ServerAuthzGVR     = schema.GroupVersionResource{Group: Group, Version: "v1beta1", Resource: "serverauthorizations"}
	AuthzPolicyGVR     = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "authorizationpolicies"}
	MeshTLSAuthnGVR    = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "meshtlsauthentications"}
	NetworkAuthnGVR    = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "networkauthentications"}
	HTTPRoutesGVR      = schema.GroupVersionResource{Group: Group, Version: "v1beta3", Resource: "httproutes"}
	RateLimitPolicyGVR = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "httplocalratelimitpolicies"}
)

// Kinds as they appear in references and metric labels.
const (
	KindServer              = "Server"
	KindServerAuthorization = "ServerAuthorization"
	KindAuthorizationPolicy = "AuthorizationPolicy"
	KindMeshTLSAuthn        = "MeshTLSAuthentication"
	KindNetworkAuthn        = "NetworkAuthentication"
	KindHTTPRoute           = "HTTPRoute"
	KindRateLimitPolicy     = "HTTPLocalRateLimitPolicy"
	KindServiceAccount      = "ServiceAccount"
	KindNamespace           = "Namespace"
)

// object is what the index keeps of every policy resource.
type object struct {
	Kind      string
	Namespace string
	Name      string
	Labels    map[string]string
	Created   metav1.Time
	raw       *unstructured.Unstructured
}

func (o *object) key() string { return o.Namespace + "/" + o.Name }

type serverSpec struct {
	PodSelector   *metav1.LabelSelector `json:"podSelector"`
	Port          intstr.IntOrString    `json:"port"`
	ProxyProtocol string                `json:"proxyProtocol"`
	AccessPolicy  string                `json:"accessPolicy"`
}

type networkSpec struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except"`
}

type serverAuthzSpec struct {
	Server struct {
		Name     string                `json:"name"`
		Selector *metav1.LabelSelector `json:"selector"`
	} `json:"server"`
	Client struct {
		Networks        []networkSpec `json:"networks"`
		Unauthenticated bool          `json:"unauthenticated"`
		MeshTLS         *struct {
			UnauthenticatedTLS bool     `json:"unauthenticatedTLS"`
			Identities         []string `json:"identities"`
			ServiceAccounts    []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"serviceAccounts"`
		} `json:"meshTLS"`
	} `json:"client"`
}

type ref struct {
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type authzPolicySpec struct {
	TargetRef                  ref   `json:"targetRef"`
	RequiredAuthenticationRefs []ref `json:"requiredAuthenticationRefs"`
}

type meshTLSSpec struct {
	Identities   []string `json:"identities"`
	IdentityRefs []ref    `json:"identityRefs"`
}

type networkAuthnSpec struct {
	Networks []networkSpec `json:"networks"`
}

type httpRouteSpec struct {
	ParentRefs []ref `json:"parentRefs"`
	Rules      []struct {
		Matches []struct {
			Path *struct {
				Type  string `json:"type"`
				Value string `json:"value"`
			} `json:"path"`
			Method  string `json:"method"`
			Headers []struct {
				Type  string `json:"type"`
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"headers"`
		} `json:"matches"`
	} `json:"rules"`
}

type rps struct {
	RequestsPerSecond float64 `json:"requestsPerSecond"`
}

type rateLimitSpec struct {
	TargetRef ref  `json:"targetRef"`
	Total     *rps `json:"total"`
	Identity  *rps `json:"identity"`
	Overrides []struct {
		RequestsPerSecond float64 `json:"requestsPerSecond"`
		ClientRefs        []ref   `json:"clientRefs"`
	} `json:"overrides"`
}

func newObject(kind string, u *unstructured.Unstructured) *object {
	return &object{Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(), Labels: u.GetLabels(),
		Created: u.GetCreationTimestamp(), raw: u}
}

// spec decodes the object's spec into dst.
func (o *object) spec(dst any) error {
	s, ok := o.raw.Object["spec"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s has no spec", o.Kind, o.key())
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(s, dst); err != nil {
		return fmt.Errorf("%s %s: spec: %v", o.Kind, o.key(), err)
	}
	return nil
}

// sameKind compares kinds case-insensitively, as Kubernetes references
// are written both ways in practice.
func sameKind(a, b string) bool { return strings.EqualFold(a, b) }

// policyGroup reports whether a reference's group is Linkerd's policy
// group (empty counts, for kinds only that group has).
func policyGroup(g string) bool { return g == "" || g == Group }
