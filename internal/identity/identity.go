// Package identity is the core of the mesh's certificate authority: it
// checks that a proxy holds the identity it asks for (a Validator), signs
// its certificate (an Issuer), and serves both over the Certify RPC. It knows
// nothing of Kubernetes; adapters (TokenReview, Secret watcher) live in
// sibling packages and plug in through the interfaces here.
package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Typed errors, mapped to gRPC codes by the server.
var (
	// ErrUnauthenticated: the token is missing, forged, expired or meant for another audience.
	ErrUnauthenticated = errors.New("identity: token not authenticated")
	// ErrPermissionDenied: the token is valid but proves a different identity.
	ErrPermissionDenied = errors.New("identity: requested identity does not match the token")
	// ErrInvalidRequest: the CSR or the requested name is malformed.
	ErrInvalidRequest = errors.New("identity: invalid request")
	// ErrUnavailable: no usable issuer is loaded.
	ErrUnavailable = errors.New("identity: no valid issuer")
)

// Validator checks a proxy's token and returns the identity it proves.
type Validator interface {
	Validate(ctx context.Context, token []byte) (Name, error)
}

// Issuer signs leaf certificates. Implementations live in sibling packages
// (a local CA from a Secret, an external CA).
type Issuer interface {
	// Issue signs csr for name, valid for lifetime (plus a clock-skew
	// allowance before now).
	Issue(ctx context.Context, csr *x509.CertificateRequest, name Name, lifetime time.Duration) (*Leaf, error)
}

// Expirer is an optional Issuer capability: it reports when the issuer's own
// certificate expires, for metrics and checks.
type Expirer interface {
	Expiry() time.Time
}

// Leaf is a signed certificate and its chain up to (not including) an anchor.
type Leaf struct {
	Certificate   *x509.Certificate
	Intermediates []*x509.Certificate
}

// Name is a proxy identity: a ServiceAccount in a namespace, under the
// control plane's namespace and trust domain.
type Name struct {
	ServiceAccount string
	Namespace      string
	ControlPlaneNS string // e.g. "linkerd"
	TrustDomain    string // e.g. "cluster.local"
}

// DNSName is Linkerd's identity string,
// <sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>.
func (n Name) DNSName() string {
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", n.ServiceAccount, n.Namespace, n.ControlPlaneNS, n.TrustDomain)
}

// SPIFFEID is spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
func (n Name) SPIFFEID() string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", n.TrustDomain, n.Namespace, n.ServiceAccount)
}

// Valid reports whether every part is a DNS label (or, for the trust
// domain, a dotted name).
func (n Name) Valid() error {
	for what, v := range map[string]string{"service account": n.ServiceAccount, "namespace": n.Namespace, "control plane namespace": n.ControlPlaneNS} {
		if !isDNSLabel(v) {
			return fmt.Errorf("%w: %s %q is not a DNS label", ErrInvalidRequest, what, v)
		}
	}
	for _, l := range strings.Split(n.TrustDomain, ".") {
		if !isDNSLabel(l) {
			return fmt.Errorf("%w: trust domain %q is not a DNS name", ErrInvalidRequest, n.TrustDomain)
		}
	}
	return nil
}

// ParseName parses a DNS identity under the given control-plane namespace
// and trust domain.
func ParseName(s, controlPlaneNS, trustDomain string) (Name, error) {
	suffix := ".serviceaccount.identity." + controlPlaneNS + "." + trustDomain
	head, ok := strings.CutSuffix(s, suffix)
	if !ok {
		return Name{}, fmt.Errorf("%w: %q is not under %q", ErrInvalidRequest, s, "*"+suffix)
	}
	sa, ns, ok := strings.Cut(head, ".")
	if !ok || strings.Contains(ns, ".") {
		return Name{}, fmt.Errorf("%w: %q is not <serviceaccount>.<namespace>%s", ErrInvalidRequest, s, suffix)
	}
	n := Name{ServiceAccount: sa, Namespace: ns, ControlPlaneNS: controlPlaneNS, TrustDomain: trustDomain}
	return n, n.Valid()
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
