package kubetest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestMutatingWebhookIsCalled proves admission webhooks work in API-server
// mode: a webhook served by the test adds a label to every ConfigMap.
func TestMutatingWebhookIsCalled(t *testing.T) {
	a := StartAPIServer(t)
	dir := t.TempDir()
	ca, err := NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.Issue("webhook", "webhook", nil, nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		calls.Add(1)
		pt := admissionv1.PatchTypeJSONPatch
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, PatchType: &pt,
			Patch: []byte(`[{"op":"add","path":"/metadata/labels","value":{"mutated-by":"kubetest"}}]`)}
		review.Request = nil
		json.NewEncoder(w).Encode(review)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	url := "https://" + l.Addr().String() + "/mutate"
	none := admissionregv1.SideEffectClassNone
	fail := admissionregv1.Fail
	ctx := context.Background()
	_, err = a.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "kubetest"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    "configmaps.kubetest.weft",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca.PEM()},
			Rules:                   []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create}, Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The API server picks webhook configurations up asynchronously: create
	// probes until one goes through the webhook (bounded).
	var cm *corev1.ConfigMap
	for i := 0; i < 50; i++ {
		cm, err = a.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("probe-%d", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create through the webhook: %v", err)
		}
		if cm.Labels["mutated-by"] == "kubetest" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cm.Labels["mutated-by"] != "kubetest" || calls.Load() == 0 {
		t.Errorf("labels %v after %d webhook calls; want the webhook's label", cm.Labels, calls.Load())
	}
}
