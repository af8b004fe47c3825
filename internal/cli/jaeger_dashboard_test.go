package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func TestJaegerPod(t *testing.T) {
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "jaeger", Namespace: "linkerd-jaeger"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"component": "jaeger"}}}}
	pod := func(name string, phase corev1.PodPhase, ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "linkerd-jaeger", Labels: map[string]string{"component": "jaeger"}},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
	}
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		want    string // the pod's name, or a piece of the error
		notInst bool
	}{
		{"no Deployment", nil, "Jaeger (Deployment jaeger in namespace linkerd-jaeger): no such Deployment", true},
		{"no pod", []runtime.Object{deploy}, "no ready pod of Jaeger (Deployment jaeger in namespace linkerd-jaeger, 0 pods)", false},
		{"pending and unready", []runtime.Object{deploy, pod("a", corev1.PodPending, corev1.ConditionFalse), pod("b", corev1.PodRunning, corev1.ConditionFalse)}, "2 pods", false},
		{"one ready", []runtime.Object{deploy, pod("a", corev1.PodRunning, corev1.ConditionFalse), pod("b", corev1.PodRunning, corev1.ConditionTrue)}, "b", false},
	} {
		c := fake.NewSimpleClientset(tc.objects...)
		got, err := waitReadyPod(context.Background(), c, "linkerd-jaeger", "jaeger", "Jaeger", 0*time.Second)
		if errors.Is(err, errNoDeployment) != tc.notInst {
			t.Errorf("%s: err %v, not-installed %v", tc.name, err, tc.notInst)
		}
		switch {
		case err != nil && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: err %v, want it to say %q", tc.name, err, tc.want)
		case err == nil && got.Name != tc.want:
			t.Errorf("%s: pod %s, want %s", tc.name, got.Name, tc.want)
		}
	}
}

// Without Jaeger the command explains what to do instead of failing on a
// missing pod.
func TestJaegerDashboardNotInstalled(t *testing.T) {
	// An API server that has no Deployment jaeger (a real HTTP server: the
	// command builds its own client from the kubeconfig).
	var asked atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
	}))
	defer api.Close()
	srv := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\ncurrent-context: c\n", api.URL)
	if err := os.WriteFile(srv, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := NewRoot(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"jaeger", "dashboard", "--kubeconfig", srv, "--show", "url", "--wait", "1s"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "Jaeger is not installed") || !strings.Contains(err.Error(), "jaeger.enabled=true") {
		t.Fatalf("err %v, want an explanation naming jaeger.enabled", err)
	}
	if got, _ := asked.Load().(string); got != "/apis/apps/v1/namespaces/linkerd-jaeger/deployments/jaeger" {
		t.Errorf("the command asked for %q", got)
	}
}
