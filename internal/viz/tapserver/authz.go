package tapserver

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/viz/tapapi"
)

// httpError is an error with the HTTP status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func bearer(r *http.Request) string {
	for _, h := range []string{tapapi.TokenHeader, "Authorization"} {
		if v := r.Header.Get(h); v != "" {
			if t, ok := strings.CutPrefix(v, "Bearer "); ok {
				return strings.TrimSpace(t)
			}
		}
	}
	return ""
}

// authorize authenticates the caller's token (TokenReview) and asks the API
// server whether that user may watch the resource's tap
// (SubjectAccessReview: verb watch, group tap.linkerd.io, resource
// <plural>, subresource tap), as Linkerd's tap does.
func authorize(ctx context.Context, kube kubernetes.Interface, token, namespace, plural, name string) (string, error) {
	if token == "" {
		return "", &httpError{http.StatusUnauthorized, fmt.Sprintf("tap needs the caller's bearer token (header %s or Authorization): the tap server authorizes the caller's own Kubernetes identity", tapapi.TokenHeader)}
	}
	tr, err := kube.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return "", &httpError{http.StatusInternalServerError, fmt.Sprintf("reviewing the caller's token: %v", err)}
	}
	if !tr.Status.Authenticated {
		msg := "the caller's token is not valid"
		if tr.Status.Error != "" {
			msg += ": " + tr.Status.Error
		}
		return "", &httpError{http.StatusUnauthorized, msg}
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	ra := &authzv1.ResourceAttributes{Namespace: namespace, Verb: tapapi.Verb, Group: tapapi.APIGroup, Version: tapapi.APIVersion,
		Resource: plural, Subresource: tapapi.Subresource, Name: name}
	if plural == "namespaces" {
		ra.Namespace = name
	}
	sar, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		ResourceAttributes: ra, User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra}}, metav1.CreateOptions{})
	if err != nil {
		return u.Username, &httpError{http.StatusInternalServerError, fmt.Sprintf("checking %s's access: %v", u.Username, err)}
	}
	if !sar.Status.Allowed {
		what := plural + "/" + tapapi.Subresource
		if name != "" {
			what += " " + name
		}
		msg := fmt.Sprintf("tap denied: %s cannot %s %s in namespace %q (API group %s)", u.Username, tapapi.Verb, what, ra.Namespace, tapapi.APIGroup)
		if sar.Status.Reason != "" {
			msg += ": " + sar.Status.Reason
		}
		return u.Username, &httpError{http.StatusForbidden, msg + "; grant it a Role or ClusterRole allowing verb watch on " + tapapi.APIGroup + " resources (the chart's linkerd-<viz namespace>-tap-admin ClusterRole does)"}
	}
	return u.Username, nil
}
