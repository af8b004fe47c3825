package kubetest

import (
	"context"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAPIServerIssuesAndReviewsTokens(t *testing.T) {
	start := time.Now()
	a := StartAPIServer(t)
	t.Logf("etcd + kube-apiserver ready in %v", time.Since(start).Round(10*time.Millisecond))
	ctx := context.Background()
	c := a.Client
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := c.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "web", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{"identity.l5d.io"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	review := func(token string) authnv1.TokenReviewStatus {
		r, err := c.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{"identity.l5d.io"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenReview: %v", err)
		}
		return r.Status
	}
	st := review(tr.Status.Token)
	if !st.Authenticated || st.User.Username != "system:serviceaccount:shop:web" || len(st.Audiences) != 1 || st.Audiences[0] != "identity.l5d.io" {
		t.Errorf("real token: %+v; want authenticated as system:serviceaccount:shop:web for identity.l5d.io", st)
	}
	if st := review("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.forged"); st.Authenticated {
		t.Errorf("forged token authenticated: %+v", st)
	}
}
