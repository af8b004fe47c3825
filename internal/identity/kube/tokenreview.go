// Package kube adapts the identity core to Kubernetes: a Validator backed by
// the TokenReview API, and a watcher that loads the issuer from the
// linkerd-identity-issuer Secret (and the trust anchors from the
// linkerd-identity-trust-roots ConfigMap) and swaps it into the Certify
// service whenever cert-manager rotates it.
package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/identity"
)

// Audience is the audience of the projected ServiceAccount tokens proxies send.
const Audience = "identity.l5d.io"

// TokenReviewer validates tokens with the Kubernetes TokenReview API.
type TokenReviewer struct {
	client         kubernetes.Interface
	controlPlaneNS string
	trustDomain    string
}

var _ identity.Validator = (*TokenReviewer)(nil)

// NewTokenReviewer returns a Validator that asks the API server.
func NewTokenReviewer(client kubernetes.Interface, controlPlaneNS, trustDomain string) *TokenReviewer {
	return &TokenReviewer{client: client, controlPlaneNS: controlPlaneNS, trustDomain: trustDomain}
}

// Validate reviews token for the identity audience and maps the
// ServiceAccount it authenticates to an identity Name.
func (v *TokenReviewer) Validate(ctx context.Context, token []byte) (identity.Name, error) {
	tr, err := v.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: strings.TrimSpace(string(token)), Audiences: []string{Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return identity.Name{}, fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	if st.Error != "" {
		return identity.Name{}, fmt.Errorf("%w: %s", identity.ErrUnauthenticated, st.Error)
	}
	if !st.Authenticated {
		return identity.Name{}, fmt.Errorf("%w: token not authenticated by the API server", identity.ErrUnauthenticated)
	}
	if !slices.Contains(st.Audiences, Audience) {
		return identity.Name{}, fmt.Errorf("%w: token audiences %v do not include %s", identity.ErrUnauthenticated, st.Audiences, Audience)
	}
	parts := strings.Split(st.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return identity.Name{}, fmt.Errorf("%w: %q is not a ServiceAccount", identity.ErrUnauthenticated, st.User.Username)
	}
	n := identity.Name{Namespace: parts[2], ServiceAccount: parts[3], ControlPlaneNS: v.controlPlaneNS, TrustDomain: v.trustDomain}
	if err := n.Valid(); err != nil {
		return identity.Name{}, err
	}
	return n, nil
}
