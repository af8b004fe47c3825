package viz

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// startKubeMetricsAPI runs the metrics API as in the cluster — resources
// and pod counts from a real kube-apiserver, metrics from the test's
// Prometheus — with the shop namespace holding web and api (meshed, as
// scraped) and legacy (running without a proxy). It returns its URL.
func startKubeMetricsAPI(t *testing.T, m *vizMesh) string {
	api := kubetest.StartAPIServer(t)
	ctx := context.Background()
	c := api.Client
	mustCreate := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("creating %s: %v", what, err)
		}
	}
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	mustCreate("namespace", err)
	_, err = c.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	mustCreate("service account", err)
	for _, w := range []struct {
		name, pod string
		meshed    bool
	}{{"web", "web-0", true}, {"api", "api-0", true}, {"legacy", "legacy-0", false}} {
		labels := map[string]string{"app": w.name}
		_, err := c.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: w.name},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}},
			},
		}, metav1.CreateOptions{})
		mustCreate("deployment "+w.name, err)
		createRunningPod(t, c, w.pod, labels, w.meshed)
	}

	// weft check adds the viz group once the viz namespace exists.
	out, _ := exec.Command(m.bin+"/weft", "check", "--kubeconfig", api.Kubeconfig).CombinedOutput()
	if strings.Contains(string(out), "linkerd-viz\n---") {
		t.Errorf("weft check shows viz checks without viz:\n%s", out)
	}
	_, err = c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-viz"}}, metav1.CreateOptions{})
	mustCreate("namespace linkerd-viz", err)
	out, err = exec.Command(m.bin+"/weft", "check", "--kubeconfig", api.Kubeconfig).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "linkerd-viz\n-----------\n× the viz extension's Deployments are available\n    no viz Deployments in namespace linkerd-viz") ||
		!strings.Contains(string(out), "× the metrics API answers") {
		t.Errorf("weft check with an empty viz namespace: %v\n%s", err, out)
	}

	addr, admin := freeAddr(t), freeAddr(t)
	start(t, "metrics-api-kube", nil, m.bin+"/weft-controller", "metrics-api", "--kubeconfig", api.Kubeconfig,
		"--prometheus-url", m.promURL, "--addr", addr, "--admin-addr", admin)
	waitReady(t, "http://"+admin+"/ready")
	return "http://" + addr
}

// checkKubeMode checks the metrics API of startKubeMetricsAPI.
func checkKubeMode(t *testing.T, m *vizMesh, url string, wantRPS float64) {
	ctx := context.Background()
	mc := &metricsapi.Client{Base: url}

	resp, err := mc.Stat(ctx, metricsapi.StatRequest{Kind: metricsapi.KindDeployment, Namespace: "shop", Window: window})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{"web": {1, 1}, "api": {1, 1}, "legacy": {0, 1}}
	if len(resp.Rows) != len(want) {
		t.Fatalf("rows %+v, want web, api, legacy", resp.Rows)
	}
	for _, r := range resp.Rows {
		if w := want[r.Name]; r.MeshedPods != w[0] || r.TotalPods != w[1] {
			t.Errorf("%s: meshed %d/%d, want %d/%d", r.Name, r.MeshedPods, r.TotalPods, w[0], w[1])
		}
		if r.Name == "api" {
			within(t, "api rps (Kubernetes mode)", r.RPS, wantRPS)
		}
		if r.Name == "legacy" && r.RPS != nil {
			t.Errorf("legacy has metrics: %+v", r)
		}
	}
	ns, err := mc.Stat(ctx, metricsapi.StatRequest{Kind: metricsapi.KindNamespace, Name: "shop", Window: window})
	if err != nil || len(ns.Rows) != 1 || ns.Rows[0].MeshedPods != 2 || ns.Rows[0].TotalPods != 3 {
		t.Errorf("namespace shop: %+v, %v; want meshed 2/3", ns, err)
	}
	for _, tc := range []struct {
		name, code, msg string
	}{
		{"legacy", "not-meshed", `deployment/legacy in namespace "shop" is not meshed: none of its 1 running pods has a linkerd-proxy container`},
		{"nope", "not-found", `deployment/nope not found in namespace "shop"`},
	} {
		_, err := mc.Stat(ctx, metricsapi.StatRequest{Kind: metricsapi.KindDeployment, Namespace: "shop", Name: tc.name, Window: window})
		var ae *metricsapi.APIError
		if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != tc.code || ae.Message != tc.msg {
			t.Errorf("stat deploy/%s: %v, want 404 %s %q", tc.name, err, tc.code, tc.msg)
		}
	}
	out, err := m.weftAt(url, "viz", "stat", "deploy", "-n", "shop", "-t", "10s")
	t.Logf("weft viz stat deploy -n shop (Kubernetes mode):\n%s", out)
	if err != nil || !regexp.MustCompile(`(?m)^legacy\s+0/1\s+-`).MatchString(out) || !regexp.MustCompile(`(?m)^api\s+1/1\s+[0-9.]+%`).MatchString(out) {
		t.Errorf("weft viz stat: %v\n%s", err, out)
	}
}

func createRunningPod(t *testing.T, c kubernetes.Interface, name string, labels map[string]string, meshed bool) {
	t.Helper()
	ctx := context.Background()
	containers := []corev1.Container{{Name: "app", Image: "app:1"}}
	if meshed {
		containers = append(containers, corev1.Container{Name: "linkerd-proxy", Image: "proxy:1"})
	}
	p, err := c.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: containers},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := c.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod %s status: %v", name, err)
	}
}
