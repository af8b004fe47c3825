package injector

import (
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
)

// TestWebhookPreserveClientAddress: the webhook reads Weft's
// client-address annotation from the pod or from its namespace; the patch
// gives the proxy its variable and NET_ADMIN and linkerd-init its flag; a
// malformed value skips injection with an Event naming the annotation.
func TestWebhookPreserveClientAddress(t *testing.T) {
	yes := true
	owner := []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-abc", Controller: &yes}}
	pod := func(ns string, ann map[string]string) []byte {
		raw, _ := json.Marshal(&corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "web-abc-", Namespace: ns, Annotations: ann, OwnerReferences: owner},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}}})
		return raw
	}
	namespaces := map[string]map[string]string{
		"kept":  {compat.AnnotationInject: "enabled", compat.AnnotationPreserveClientAddress: "true"},
		"plain": {compat.AnnotationInject: "enabled"},
	}
	tests := []struct {
		name      string
		raw       []byte
		wantKept  bool
		wantEvent string // a Skipped Event's message part, "" for injected
	}{
		{"namespace", pod("kept", nil), true, ""},
		{"pod", pod("plain", map[string]string{compat.AnnotationPreserveClientAddress: "true"}), true, ""},
		{"pod false over namespace", pod("kept", map[string]string{compat.AnnotationPreserveClientAddress: "false"}), false, ""},
		{"neither", pod("plain", nil), false, ""},
		{"malformed", pod("plain", map[string]string{compat.AnnotationPreserveClientAddress: "maybe"}), false, compat.AnnotationPreserveClientAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []event
			v := inject.DefaultValues()
			v.IdentityTrustAnchorsPEM = "pem"
			wh := &Webhook{Values: NewLiveValues(v), CreatedBy: "test", Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
				Cluster: fakeCluster{namespaces: namespaces},
				Events: func(ref *corev1.ObjectReference, _, reason, msg string) {
					events = append(events, event{ref.Kind, ref.Name, reason, msg})
				}}
			resp := review(t, wh, tt.raw)
			if !resp.Allowed {
				t.Fatalf("not allowed: %+v", resp.Result)
			}
			if tt.wantEvent != "" {
				if resp.Patch != nil || len(events) != 1 || events[0].reason != compat.EventReasonSkipped || !strings.Contains(events[0].message, tt.wantEvent) {
					t.Fatalf("patch %s, events %+v; want no patch and a Skipped Event naming %s", resp.Patch, events, tt.wantEvent)
				}
				return
			}
			patch := string(resp.Patch)
			if !strings.Contains(patch, `"name":"linkerd-proxy"`) {
				t.Fatalf("not injected: %s (events %+v)", patch, events)
			}
			got := map[string]bool{
				"env":       strings.Contains(patch, `"name":"`+compat.EnvPreserveClientAddress+`","value":"true"`),
				"NET_ADMIN": strings.Contains(patch, `"add":["NET_ADMIN"],"drop":["ALL"]}`),
				"init flag": strings.Contains(patch, `"--preserve-client-address"`),
			}
			for what, have := range got {
				if have != tt.wantKept {
					t.Errorf("%s in the patch: %v, want %v", what, have, tt.wantKept)
				}
			}
		})
	}
}
