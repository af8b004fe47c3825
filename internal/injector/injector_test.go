package injector

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
)

// fakeCluster is an in-memory Cluster: namespaces' annotations and
// ReplicaSet → Deployment ownership.
type fakeCluster struct {
	namespaces map[string]map[string]string
}

func (f fakeCluster) NamespaceAnnotations(_ context.Context, name string) (map[string]string, error) {
	return f.namespaces[name], nil
}

func (f fakeCluster) Owner(_ context.Context, ns string, ref metav1.OwnerReference) (*corev1.ObjectReference, bool, error) {
	if ref.Kind == "ReplicaSet" {
		return &corev1.ObjectReference{Kind: "Deployment", Name: strings.Split(ref.Name, "-")[0], Namespace: ns}, true, nil
	}
	return &corev1.ObjectReference{Kind: ref.Kind, Name: ref.Name, Namespace: ns}, true, nil
}

type event struct{ kind, name, reason, message string }

func TestWebhookRules(t *testing.T) {
	yes, no := true, false
	owner := []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", Controller: &yes}}
	pod := func(ns string, ann map[string]string, mut func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-abc-", Namespace: ns, Annotations: ann, OwnerReferences: owner},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}}}
		if mut != nil {
			mut(p)
		}
		return p
	}
	enabled := map[string]string{compat.AnnotationInject: "enabled"}
	tests := []struct {
		name     string
		obj      runtime.Object
		injected bool
		event    string // reason of the Event on the Deployment, "" for none
		message  string
	}{
		{"namespace enabled", pod("meshed", nil, nil), true, compat.EventReasonInjected, compat.EventMessageInjected},
		{"pod enabled, namespace not", pod("plain", enabled, nil), true, compat.EventReasonInjected, compat.EventMessageInjected},
		{"pod disabled", pod("meshed", map[string]string{compat.AnnotationInject: "disabled"}, nil), false, compat.EventReasonSkipped, inject.ReasonPodDisabled},
		{"nothing asked", pod("plain", nil, nil), false, "", ""},
		{"host network", pod("meshed", nil, func(p *corev1.Pod) { p.Spec.HostNetwork = true }), false, compat.EventReasonSkipped, inject.ReasonHostNetwork},
		{"sidecar exists", pod("meshed", nil, func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "linkerd-proxy"})
		}), false, compat.EventReasonSkipped, inject.ReasonSidecarExists},
		{"automount off", pod("meshed", nil, func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = &no }), false, compat.EventReasonSkipped, inject.ReasonAutomountDisabled},
		{"bad override", pod("meshed", map[string]string{compat.AnnotationProxyCPULimit: "lots"}, nil), false, compat.EventReasonSkipped, compat.AnnotationProxyCPULimit},
		{"unsupported resource", &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "meshed"}}, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []event
			v := inject.DefaultValues()
			v.IdentityTrustAnchorsPEM = "pem"
			wh := &Webhook{Values: NewLiveValues(v), CreatedBy: "test", Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
				Cluster: fakeCluster{namespaces: map[string]map[string]string{"meshed": enabled, "plain": nil}},
				Events: func(ref *corev1.ObjectReference, _, reason, msg string) {
					events = append(events, event{ref.Kind, ref.Name, reason, msg})
				}}
			raw, _ := json.Marshal(tt.obj)
			resp := review(t, wh, raw)
			if !resp.Allowed {
				t.Fatalf("not allowed: %+v", resp.Result)
			}
			if got := resp.Patch != nil; got != tt.injected {
				t.Errorf("patched %v, want %v", got, tt.injected)
			}
			if tt.injected && !strings.Contains(string(resp.Patch), `"name":"linkerd-proxy"`) {
				t.Errorf("patch without the proxy: %s", resp.Patch)
			}
			switch {
			case tt.event == "" && len(events) > 0:
				t.Errorf("events %+v, want none", events)
			case tt.event != "" && (len(events) != 1 || events[0].reason != tt.event || !strings.Contains(events[0].message, tt.message) ||
				events[0].kind != "Deployment" || events[0].name != "web"):
				t.Errorf("events %+v, want one %s on Deployment web saying %q", events, tt.event, tt.message)
			}
		})
	}
}

// review posts an AdmissionReview to the webhook's HTTP handler.
func review(t *testing.T, wh *Webhook, raw []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	var kind struct {
		Kind     string
		Metadata struct{ Namespace string }
	}
	json.Unmarshal(raw, &kind)
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Kind: kind.Kind}, Namespace: kind.Metadata.Namespace, Object: runtime.RawExtension{Raw: raw}}})
	rec := httptest.NewRecorder()
	wh.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body))))
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("answer %q: %v", rec.Body.String(), err)
	}
	if out.Response.UID != "u1" {
		t.Errorf("UID %q, want the request's", out.Response.UID)
	}
	return out.Response
}

func TestWebhookRejectsGarbage(t *testing.T) {
	wh := &Webhook{Log: slog.Default()}
	rec := httptest.NewRecorder()
	wh.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("not json")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status %d for garbage, want 400", rec.Code)
	}
}

func TestNormalisePorts(t *testing.T) {
	ports := []corev1.ServicePort{{Name: "mysql", Port: 3306}, {Name: "pg", Port: 5432}}
	tests := []struct{ in, want string }{
		{"mysql, 5432,5432", "3306,5432"},
		{"4000-4100,pg", "4000-4100,5432"},
		{"25", "25"},
	}
	for _, tt := range tests {
		got, err := normalisePorts(tt.in, ports)
		if err != nil || got != tt.want {
			t.Errorf("normalisePorts(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := normalisePorts("nope", ports); err == nil {
		t.Error("no error for an unknown port name")
	}
}
