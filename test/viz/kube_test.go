package viz

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// startKubeMetricsAPI runs the metrics API as in the cluster — resources
// and pod counts from a real kube-apiserver, metrics from the test's
// Prometheus — with the shop namespace holding web and api (meshed, as
// scraped) and legacy (running without a proxy). It returns its URL.
func startKubeMetricsAPI(t *testing.T, m *vizMesh) string {
	api := m.kube // the policy controller's, with namespace shop
	ctx := context.Background()
	c := api.Client
	mustCreate := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("creating %s: %v", what, err)
		}
	}
	_, err := c.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	mustCreate("service account", err)
	for _, w := range []struct {
		name, pod, admin string
		meshed           bool
	}{{"web", "web-0", m.webAdmin, true}, {"api", "api-0", m.apiAdmin, true}, {"legacy", "legacy-0", "", false}} {
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
		podLabels := map[string]string{"app": w.name}
		if w.meshed {
			podLabels["linkerd.io/control-plane-ns"], podLabels["linkerd.io/proxy-deployment"] = "linkerd", w.name
		}
		createRunningPod(t, c, w.pod, podLabels, w.admin)
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

	a := proctest.StartListening(t, "metrics-api-kube", nil, m.bin+"/weft-controller", "metrics-api", "--kubeconfig", api.Kubeconfig,
		"--prometheus-url", m.promURL, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	waitReady(t, "http://"+a["metrics-api admin server"]+"/ready")
	return "http://" + a["metrics-api server"]
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

// createRunningPod creates a running pod at 127.0.0.1 whose app container
// has an http port; with proxyAdmin (host:port), it also has the
// linkerd-proxy container whose linkerd-admin port is that proxy's.
func createRunningPod(t *testing.T, c kubernetes.Interface, name string, labels map[string]string, proxyAdmin string) {
	t.Helper()
	ctx := context.Background()
	containers := []corev1.Container{{Name: "app", Image: "app:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 1, Protocol: corev1.ProtocolTCP}}}}
	if proxyAdmin != "" {
		_, port, _ := net.SplitHostPort(proxyAdmin)
		n, _ := strconv.Atoi(port)
		containers = append(containers, corev1.Container{Name: "linkerd-proxy", Image: "proxy:1",
			Ports: []corev1.ContainerPort{{Name: "linkerd-admin", ContainerPort: int32(n), Protocol: corev1.ProtocolTCP}}})
	}
	p, err := c.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: containers},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
	p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, "127.0.0.1", []corev1.PodIP{{IP: "127.0.0.1"}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := c.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod %s status: %v", name, err)
	}
}

// checkHTTPSD runs a second real Prometheus whose only discovery is the
// metrics API's http_sd endpoint (pods from the kube-apiserver), with the
// chart's relabel rules: it must scrape exactly the two proxies, labelled
// as Kubernetes discovery would have them labelled.
func checkHTTPSD(t *testing.T, m *vizMesh, url string) {
	promAddr := proctest.FreeAddr(t)
	cfg := m.write(t, "prometheus-sd.yml", prometheusJob(t, "http_sd_configs",
		[]any{map[string]any{"url": url + "/api/v1/prometheus-sd", "refresh_interval": "1s"}}))
	bin := requirePrometheus(t)
	proctest.Start(t, "prometheus-sd", nil, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(m.dir, "tsdb-sd"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	waitReady(t, "http://"+promAddr+"/-/ready")
	var got map[string]map[string]string
	var dropped int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got, dropped = promTargets(t, "http://"+promAddr)
		if len(got) == 2 && got["web-0"]["health"] == "up" && got["api-0"]["health"] == "up" || time.Now().After(deadline) {
			break
		}
	}
	want := map[string]map[string]string{
		"web-0": {"instance": m.webAdmin, "job": "linkerd-proxy", "namespace": "shop", "pod": "web-0", "deployment": "web",
			"app": "web", "control_plane_ns": "linkerd", "health": "up"},
		"api-0": {"instance": m.apiAdmin, "job": "linkerd-proxy", "namespace": "shop", "pod": "api-0", "deployment": "api",
			"app": "api", "control_plane_ns": "linkerd", "health": "up"},
	}
	if len(got) != 2 {
		t.Errorf("targets %v, want web-0 and api-0", got)
	}
	for pod, w := range want {
		if !equalMaps(got[pod], w) {
			t.Errorf("target %s = %v, want %v", pod, got[pod], w)
		}
	}
	// Dropped: the three app containers' http ports.
	if dropped != 3 {
		t.Errorf("%d dropped targets, want 3 (the app containers' ports)", dropped)
	}
}

// haveKubeBins tells whether kube-apiserver and etcd are here (with
// WEFT_REQUIRE_K8S=1 they must be: kubetest then fails the test).
func haveKubeBins() bool {
	if os.Getenv("WEFT_REQUIRE_K8S") == "1" {
		return true
	}
	_, err := os.Stat(filepath.Join(kubetest.BinDir(), "kube-apiserver"))
	_, lerr := exec.LookPath("etcd")
	return err == nil && lerr == nil
}

func skipWithoutKube(t *testing.T, url string) {
	if url == "" {
		t.Skip("kube-apiserver or etcd missing: run `make k8s-bins` (and apt-get install etcd-server)")
	}
}
