package injector

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
)

// TestJaegerWebhook posts AdmissionReviews over HTTP: an injected pod
// gets the trace settings (the namespace's collector annotation winning
// over the values), a pod without a proxy passes unchanged.
func TestJaegerWebhook(t *testing.T) {
	tv := inject.DefaultTraceValues()
	tv.CollectorSvcAddr, tv.CollectorSvcAccount = "tempo-distributor.tracing:55678", "tempo"
	h := &JaegerWebhook{Values: tv, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Cluster: fakeCluster{namespaces: map[string]map[string]string{"team": {compat.AnnotationTraceCollector: "otel.team:4317"}}}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	pod := func(ns string, containers ...string) *corev1.Pod {
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		wantAddr string // "" for no patch
	}{
		{"injected pod, values", pod("shop", compat.ProxyContainerName, "web"), "tempo-distributor.tracing:55678"},
		{"namespace annotation", pod("team", compat.ProxyContainerName, "web"), "otel.team:4317"},
		{"no proxy", pod("shop", "web"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, _ := json.Marshal(tc.pod)
			review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
				Request: &admissionv1.AdmissionRequest{UID: "u1", Namespace: tc.pod.Namespace, Kind: metav1.GroupVersionKind{Kind: "Pod"}, Object: runtime.RawExtension{Raw: raw}}}
			body, _ := json.Marshal(review)
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if !out.Response.Allowed || out.Response.UID != "u1" {
				t.Fatalf("response %+v", out.Response)
			}
			if tc.wantAddr == "" {
				if out.Response.Patch != nil {
					t.Errorf("patched a pod without a proxy: %s", out.Response.Patch)
				}
				return
			}
			p, err := jsonpatch.DecodePatch(out.Response.Patch)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := p.Apply(raw)
			if err != nil {
				t.Fatal(err)
			}
			var got corev1.Pod
			json.Unmarshal(patched, &got)
			env := map[string]string{}
			for _, e := range got.Spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
			if env[compat.EnvTraceCollectorSvcAddr] != tc.wantAddr {
				t.Errorf("collector = %q, want %q (env %v)", env[compat.EnvTraceCollectorSvcAddr], tc.wantAddr, env)
			}
			if len(got.Spec.Containers[1].Env) != 0 {
				t.Errorf("the app container was changed: %v", got.Spec.Containers[1].Env)
			}
		})
	}
}
