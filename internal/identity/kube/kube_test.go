package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/poll"
)

type setter struct {
	mu  sync.Mutex
	cas []*localca.CA
}

func (s *setter) SetIssuer(i identity.Issuer) {
	s.mu.Lock()
	s.cas = append(s.cas, i.(*localca.CA))
	s.mu.Unlock()
}

func (s *setter) last() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cas) == 0 {
		return 0, ""
	}
	return len(s.cas), s.cas[len(s.cas)-1].Certificate().Subject.CommonName
}

func issuerSecret(p *pki.Pair, root *pki.Pair, version string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: IssuerSecretName, Namespace: "linkerd", ResourceVersion: version},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": p.CertPEM, "tls.key": p.KeyPEM, "ca.crt": root.CertPEM},
	}
}

func TestIssuerWatcherRotatesAndRefuses(t *testing.T) {
	now := time.Now()
	root, _ := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	other, _ := pki.NewRoot("other", now.Add(-time.Hour), 24*time.Hour)
	first, _ := pki.NewIssuer(root, "issuer-1", now.Add(-time.Minute), 48*time.Hour)
	foreign, _ := pki.NewIssuer(other, "foreign", now.Add(-time.Minute), 48*time.Hour)
	second, _ := pki.NewIssuer(root, "issuer-2", now.Add(-time.Minute), 48*time.Hour)

	client := fake.NewClientset(issuerSecret(first, root, "1"))
	target := &setter{}
	rec := record.NewFakeRecorder(10)
	w := &IssuerWatcher{Client: client, Namespace: "linkerd", Scheme: SchemeKubernetes, AnchorsPEM: root.CertPEM,
		Target: target, Recorder: rec, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, cn := target.last(); n != 1 || cn != "issuer-1" {
		t.Fatalf("after start: %d issuers, last %q; want issuer-1", n, cn)
	}
	update := func(s *corev1.Secret) {
		if _, err := client.CoreV1().Secrets("linkerd").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(issuerSecret(foreign, root, "2"))
	poll.Until(t, 5*time.Second, "the refusal event", func() bool { return len(rec.Events) >= 2 })
	if n, cn := target.last(); n != 1 || cn != "issuer-1" {
		t.Errorf("after a foreign issuer: %d issuers, last %q; want issuer-1 kept", n, cn)
	}
	update(issuerSecret(second, root, "3"))
	poll.Until(t, 5*time.Second, "rotation", func() bool { n, _ := target.last(); return n == 2 })
	if _, cn := target.last(); cn != "issuer-2" {
		t.Errorf("after rotation: last %q, want issuer-2", cn)
	}
	var got []string
	for len(got) < 3 {
		select {
		case e := <-rec.Events:
			got = append(got, e)
		case <-time.After(2 * time.Second):
			t.Fatalf("events so far %q, want 3", got)
		}
	}
	want := []string{"Normal IssuerUpdated", "Warning IssuerInvalid", "Normal IssuerUpdated"}
	for i, prefix := range want {
		if i >= len(got) || len(got[i]) < len(prefix) || got[i][:len(prefix)] != prefix {
			t.Errorf("events = %q, want prefixes %q", got, want)
			break
		}
	}
}

func TestTokenReviewer(t *testing.T) {
	tests := []struct {
		name    string
		status  authnv1.TokenReviewStatus
		apiErr  error
		want    string
		wantErr error
	}{
		{"service account", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:emojivoto:web"}}, nil, "web.emojivoto.serviceaccount.identity.linkerd.cluster.local", nil},
		{"not authenticated", authnv1.TokenReviewStatus{Authenticated: false}, nil, "", identity.ErrUnauthenticated},
		{"wrong audience", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"api"},
			User: authnv1.UserInfo{Username: "system:serviceaccount:emojivoto:web"}}, nil, "", identity.ErrUnauthenticated},
		{"a user, not a service account", authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{Audience},
			User: authnv1.UserInfo{Username: "alice"}}, nil, "", identity.ErrUnauthenticated},
		{"review error", authnv1.TokenReviewStatus{Error: "token expired"}, nil, "", identity.ErrUnauthenticated},
		{"API down", authnv1.TokenReviewStatus{}, errors.New("connection refused"), "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			var sent *authnv1.TokenReview
			client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				sent = a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
				return true, &authnv1.TokenReview{Status: tt.status}, tt.apiErr
			})
			got, err := NewTokenReviewer(client, "linkerd", "cluster.local").Validate(context.Background(), []byte("tok\n"))
			if sent == nil || sent.Spec.Token != "tok" || len(sent.Spec.Audiences) != 1 || sent.Spec.Audiences[0] != Audience {
				t.Errorf("review sent = %+v, want token tok for audience %s", sent, Audience)
			}
			switch {
			case tt.want != "":
				if err != nil || got.DNSName() != tt.want {
					t.Errorf("got %q, %v; want %q", got.DNSName(), err, tt.want)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			default:
				if err == nil {
					t.Error("want an error")
				}
			}
		})
	}
}

func TestIssuerWatcherExternalCAAndLinkerdScheme(t *testing.T) {
	now := time.Now()
	root, _ := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	newRoot, _ := pki.NewRoot("root-2.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	iss, _ := pki.NewIssuer(newRoot, "issuer-under-new-root", now.Add(-time.Minute), 48*time.Hour)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: IssuerSecretName, Namespace: "linkerd", ResourceVersion: "1"},
		Data:       map[string][]byte{"crt.pem": iss.CertPEM, "key.pem": iss.KeyPEM},
	}
	roots := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: TrustRootsConfigMap, Namespace: "linkerd", ResourceVersion: "1"},
		Data:       map[string]string{TrustRootsKey: string(root.CertPEM)},
	}
	client := fake.NewClientset(secret, roots)
	target := &setter{}
	w := &IssuerWatcher{Client: client, Namespace: "linkerd", Scheme: SchemeLinkerd, ExternalCA: true,
		Target: target, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := target.last(); n != 0 {
		t.Fatalf("loaded an issuer that does not chain to the trust roots in the ConfigMap")
	}
	// trust-manager adds the new root to the bundle: the issuer now chains.
	roots = roots.DeepCopy()
	roots.ResourceVersion = "2"
	roots.Data[TrustRootsKey] = string(root.CertPEM) + string(newRoot.CertPEM)
	if _, err := client.CoreV1().ConfigMaps("linkerd").Update(ctx, roots, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "the issuer to load once its root is trusted", func() bool { n, _ := target.last(); return n == 1 })
	if _, cn := target.last(); cn != "issuer-under-new-root" {
		t.Errorf("loaded %q", cn)
	}
}
