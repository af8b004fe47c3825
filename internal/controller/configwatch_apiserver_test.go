package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/manifest"
)

// TestInjectorFollowsConfigMaps runs the injector against a real API
// server as its ServiceAccount, with the chart's RBAC and nothing more:
// pods admitted after linkerd-identity-trust-roots changes get the new
// anchors, with no restart; a malformed update leaves the last good ones;
// a linkerd-config change (disableIPv6: false) reaches new pods too.
func TestInjectorFollowsConfigMaps(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	c, bg := a.Client, context.Background()
	dir := t.TempDir()
	ca, err := kubetest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.Issue("injector", "linkerd-proxy-injector.linkerd.svc", nil, nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	anchors1, anchors2 := string(ca.PEM()), newCAPEM(t)
	values := "linkerdVersion: test\nproxy:\n  image: {name: weft.local/weft-proxy}\n"

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "linkerd", Labels: map[string]string{compat.AnnotationAdmissionWebhooks: "disabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{compat.AnnotationInject: compat.InjectEnabled}}},
	} {
		if _, err := c.CoreV1().Namespaces().Create(bg, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.CoreV1().ServiceAccounts("shop").Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	configMap := func(name, key, value string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "linkerd"}, Data: map[string]string{key: value}}
	}
	for _, cm := range []*corev1.ConfigMap{configMap(compat.ConfigConfigMap, compat.ConfigValuesKey, values),
		configMap(compat.TrustRootsConfigMap, compat.TrustRootsKey, anchors1)} {
		if _, err := c.CoreV1().ConfigMaps("linkerd").Create(bg, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The files hold what the chart mounts from the same ConfigMaps.
	valuesFile, anchorsFile := filepath.Join(dir, "values"), filepath.Join(dir, "ca-bundle.crt")
	os.WriteFile(valuesFile, []byte(values), 0o600)
	os.WriteFile(anchorsFile, []byte(anchors1), 0o600)

	kubeconfig := asInjector(t, a)
	bound := make(chan [2]string, 1)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		done <- RunInjector(ctx, InjectorOptions{Kubeconfig: kubeconfig, ControllerNS: "linkerd", Values: valuesFile,
			TrustAnchors: anchorsFile, TLSCert: crt, TLSKey: key, Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			Bound:       func(addr, adminAddr string) { bound <- [2]string{addr, adminAddr} },
			WatchConfig: true, WatchSyncTimeout: 20 * time.Second}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}()
	addr, adminAddr := boundAddrs(t, bound, done)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("injector: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("injector did not stop within 15s")
		}
	})
	waitReadyOrDone(t, adminAddr, done)
	registerWebhook(t, c, "https://"+addr+"/", ca.PEM())

	// admit asks the API server to create a pod (a dry run: the webhook
	// runs, nothing is stored) and returns the injected proxy's env.
	n := 0
	admit := func() map[string]string {
		t.Helper()
		n++
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", n)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}}}
		got, err := c.CoreV1().Pods("shop").Create(bg, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("admitting a pod: %v", err)
		}
		env := map[string]string{}
		for _, ctr := range got.Spec.Containers {
			if ctr.Name == compat.ProxyContainerName {
				for _, e := range ctr.Env {
					env[e.Name] = e.Value
				}
			}
		}
		if len(env) == 0 {
			t.Fatalf("pod %s admitted without a proxy", p.Name)
		}
		env["annotation:"+compat.AnnotationTrustRootSHA256] = got.Annotations[compat.AnnotationTrustRootSHA256]
		return env
	}
	if got := admit()[compat.EnvTrustAnchors]; got != anchors1 {
		t.Fatalf("first pod's trust anchors are not the ConfigMap's")
	}
	update := func(name, key, value string) {
		t.Helper()
		if _, err := c.CoreV1().ConfigMaps("linkerd").Update(bg, configMap(name, key, value), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// until admits pods (every 50 ms, for at most 20 s) until one passes
	// cond, and returns how long that took.
	until := func(what string, cond func(env map[string]string) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for deadline := start.Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if cond(admit()) {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no newly admitted pod %s within 20s", what)
			}
		}
	}

	update(compat.TrustRootsConfigMap, compat.TrustRootsKey, anchors2)
	took := until("has the new trust anchors", func(env map[string]string) bool {
		return env[compat.EnvTrustAnchors] == anchors2 && env["annotation:"+compat.AnnotationTrustRootSHA256] == sha256Hex(anchors2)
	})
	t.Logf("trust-roots ConfigMap update → a new pod with the new anchors: %v (pods admitted: %d)", took, n-1)

	update(compat.TrustRootsConfigMap, compat.TrustRootsKey, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
	waitRejected(t, c, compat.TrustRootsConfigMap)
	if got := admit()[compat.EnvTrustAnchors]; got != anchors2 {
		t.Errorf("after a malformed update a new pod's anchors are not the last good ones:\n%s", got)
	}

	update(compat.ConfigConfigMap, compat.ConfigValuesKey, values+"disableIPv6: false\n")
	took = until("has IPv6 listeners", func(env map[string]string) bool { return env[compat.EnvInboundListenAddrs] != "" })
	t.Logf("linkerd-config update → a new pod with its values: %v", took)
	if got := admit(); got[compat.EnvInboundListenAddrs] != "0.0.0.0:4143,[::]:4143" || got[compat.EnvTrustAnchors] != anchors2 {
		t.Errorf("after disableIPv6: false, inbound %q, anchors kept %v", got[compat.EnvInboundListenAddrs], got[compat.EnvTrustAnchors] == anchors2)
	}
}

// waitReadyOrDone waits (at most 30 s) for the injector's /ready, failing
// at once if it returned.
func waitReadyOrDone(t *testing.T, admin string, done chan error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("injector returned before it was ready: %v", err)
		default:
		}
		if ready(admin) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("injector not ready within 30s")
		}
	}
}

func ready(admin string) bool {
	resp, err := http.Get("http://" + admin + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitRejected waits (at most 15 s) for the injector's Warning Event on a
// ConfigMap it refused.
func waitRejected(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		evs, err := c.CoreV1().Events("linkerd").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.Reason == EventReasonConfigRejected && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "trust anchors") {
				return
			}
		}
	}
	t.Fatalf("no %s Event on ConfigMap %s within 15s", EventReasonConfigRejected, name)
}

// asInjector creates the injector's ServiceAccount and RBAC as the chart
// renders them, and returns a kubeconfig that impersonates that account.
func asInjector(t *testing.T, a *kubetest.APIServer) string {
	t.Helper()
	vals, err := install.ControlPlaneValues(install.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := install.Render(install.ControlPlaneChart, "weft-control-plane", "linkerd", vals)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	bg, rbac := context.Background(), a.Client.RbacV1()
	created := 0
	for _, d := range docs {
		if d.String("/metadata/labels/linkerd.io~1control-plane-component") != "proxy-injector" {
			continue
		}
		j, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		switch d.String("/kind") {
		case "ServiceAccount":
			var o corev1.ServiceAccount
			err = yaml.Unmarshal(j, &o)
			if err == nil {
				_, err = a.Client.CoreV1().ServiceAccounts(o.Namespace).Create(bg, &o, metav1.CreateOptions{})
			}
		case "ClusterRole":
			var o rbacv1.ClusterRole
			if err = yaml.Unmarshal(j, &o); err == nil {
				_, err = rbac.ClusterRoles().Create(bg, &o, metav1.CreateOptions{})
			}
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			if err = yaml.Unmarshal(j, &o); err == nil {
				_, err = rbac.ClusterRoleBindings().Create(bg, &o, metav1.CreateOptions{})
			}
		case "Role":
			var o rbacv1.Role
			if err = yaml.Unmarshal(j, &o); err == nil {
				_, err = rbac.Roles(o.Namespace).Create(bg, &o, metav1.CreateOptions{})
			}
		case "RoleBinding":
			var o rbacv1.RoleBinding
			if err = yaml.Unmarshal(j, &o); err == nil {
				_, err = rbac.RoleBindings(o.Namespace).Create(bg, &o, metav1.CreateOptions{})
			}
		default:
			continue
		}
		if err != nil {
			t.Fatalf("%s %s: %v", d.String("/kind"), d.String("/metadata/name"), err)
		}
		created++
	}
	if created != 5 {
		t.Fatalf("created %d of the injector's ServiceAccount and RBAC objects, want 5", created)
	}
	kc, err := clientcmd.LoadFromFile(a.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:linkerd:linkerd-proxy-injector"
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:linkerd", "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-injector")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
