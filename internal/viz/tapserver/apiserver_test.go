package tapserver_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/cli"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/proxy"
	"github.com/weftmesh/weft/internal/tap/taptest"
	"github.com/weftmesh/weft/internal/viz/tapapi"
	"github.com/weftmesh/weft/internal/viz/tapserver"
)

// A real kube-apiserver decides who may tap: a ServiceAccount bound to a
// ClusterRole allowing watch on tap.linkerd.io streams a real proxy's
// events; one without it, one with a bad token and one with none are
// refused with messages that say why.
func TestTapAuthorizedByKubernetesRBAC(t *testing.T) {
	api := kubetest.StartAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := api.Client
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"shop", "ops"} {
		must(kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}))
	}
	for _, sa := range []string{"tapper", "nosy"} {
		must(kc.CoreV1().ServiceAccounts("ops").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}))
	}
	must(kc.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "api"}}, metav1.CreateOptions{}))
	must(kc.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "tap-admin"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{tapapi.APIGroup}, Resources: []string{"*"}, Verbs: []string{"watch"}}}}, metav1.CreateOptions{}))
	must(kc.RbacV1().RoleBindings("shop").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tapper"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "tap-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "tapper", Namespace: "ops"}}}, metav1.CreateOptions{}))

	labels := map[string]string{"app": "api"}
	must(kc.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: "api"}}}}}}, metav1.CreateOptions{}))
	pod, err := kc.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-1", Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: "api", Containers: []corev1.Container{{Name: "api", Image: "api"}, {Name: "linkerd-proxy", Image: "proxy"}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}}}
	must(kc.CoreV1().Pods("shop").UpdateStatus(ctx, pod, metav1.UpdateOptions{}))

	// The pod's proxy (identity api.shop, as its ServiceAccount says) and
	// the tap server, both certified by a real identity service.
	m := taptest.NewMesh(t)
	px := taptest.StartProxy(t, m.Identity(t, taptest.APIID), func(c *proxy.Config) { c.InboundForward = taptest.Backend(t, "hello") })
	srv, err := tapserver.New(tapserver.Config{Kube: kc, Identity: m.Identity(t, taptest.TapID),
		ProxyAddr: func(*corev1.Pod) string { return px.Control }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	token := func(sa string) string {
		tr, err := kc.CoreV1().ServiceAccounts("ops").CreateToken(ctx, sa, &authnv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}

	t.Run("allowed", func(t *testing.T) {
		c := &tapapi.Client{Base: hs.URL, Token: token("tapper")}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		var mu sync.Mutex
		var lines []string
		done := make(chan error, 1)
		go func() {
			done <- c.Watch(wctx, "shop", "deployments", "api", tapapi.Request{Path: "/tapped"}, func(ev tapapi.Event) bool {
				mu.Lock()
				defer mu.Unlock()
				if ev.Error != "" {
					t.Errorf("tap error: %s", ev.Error)
				}
				lines = append(lines, ev.Line())
				return ev.ResponseEnd == nil
			})
		}()
		// Requests until the tap (opened asynchronously) sees one.
		for i := 0; ; i++ {
			resp, err := http.Get("http://" + px.Inbound + "/tapped/" + string(rune('a'+i%26)))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				t.Logf("tap:\n%s", strings.Join(lines, "\n"))
				if len(lines) != 3 || !strings.HasPrefix(lines[0], "req id=0:") || !strings.Contains(lines[0], ":method=GET") ||
					!strings.Contains(lines[0], ":path=/tapped/") || !strings.HasPrefix(lines[1], "rsp ") || !strings.Contains(lines[1], ":status=200") ||
					!strings.HasPrefix(lines[2], "end ") || !strings.Contains(lines[2], "response-length=5B") {
					t.Errorf("want req, rsp :status=200, end response-length=5B lines; got %q", lines)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
			if i > 100 {
				t.Fatal("no tap event after 100 requests")
			}
		}
	})
	for _, tc := range []struct {
		name, token string
		want        []string
	}{
		{"denied", token("nosy"), []string{"403", "tap denied: system:serviceaccount:ops:nosy cannot watch deployments/tap api in namespace \"shop\""}},
		{"bad token", "not-a-token", []string{"401", "not valid"}},
		{"no token", "", []string{"401", "bearer token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &tapapi.Client{Base: hs.URL, Token: tc.token}
			err := c.Watch(ctx, "shop", "deployments", "api", tapapi.Request{}, func(tapapi.Event) bool {
				t.Error("a refused tap streamed an event")
				return false
			})
			if err == nil {
				t.Fatal("tap not refused")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Viz installed in namespace weft-viz: the injector gives the proxies
	// that namespace's tap identity (internal/controller's injector test).
	// A tap server holding it taps them; one holding linkerd-viz's fails on
	// every pod, and weft viz tap says so and exits non-zero.
	pxViz := taptest.StartProxy(t, m.Identity(t, taptest.APIID), func(c *proxy.Config) {
		c.InboundForward = taptest.Backend(t, "hello")
		c.TapSvcName = taptest.VizNSTapID
	})
	tapServer := func(id string) string {
		srv, err := tapserver.New(tapserver.Config{Kube: kc, Identity: m.Identity(t, id),
			ProxyAddr: func(*corev1.Pod) string { return pxViz.Control }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		return hs.URL
	}
	weftVizTap := func(t *testing.T, base string) (string, error) {
		// Requests to the proxy while the CLI taps it.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if resp, err := http.Get("http://" + pxViz.Inbound + "/tapped"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
		var out bytes.Buffer
		root := cli.NewRoot(slog.New(slog.NewTextHandler(io.Discard, nil)))
		root.SetArgs([]string{"viz", "tap", "deploy/api", "-n", "shop", "--tap-addr", base, "--token", token("tapper"), "--max-requests", "1"})
		root.SetOut(&out)
		root.SetErr(&out)
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		err := root.ExecuteContext(wctx)
		return out.String(), err
	}
	t.Run("viz in another namespace", func(t *testing.T) {
		out, err := weftVizTap(t, tapServer(taptest.VizNSTapID))
		t.Logf("weft viz tap:\n%s", out)
		if err != nil || !strings.Contains(out, "req id=0:") || !strings.Contains(out, ":path=/tapped") || !strings.Contains(out, "end id=0:") {
			t.Errorf("weft viz tap through the weft-viz tap server: %v; want the request seen through", err)
		}
	})
	t.Run("every pod fails", func(t *testing.T) {
		out, err := weftVizTap(t, tapServer(taptest.TapID))
		t.Logf("weft viz tap: %v\n%s", err, out)
		if err == nil {
			t.Fatal("weft viz tap exited 0 though every pod's tap failed")
		}
		for _, want := range []string{"tap failed on every pod (1)", "pod shop/api-1", "PermissionDenied", taptest.VizNSTapID} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		c := &tapapi.Client{Base: hs.URL, Token: token("tapper")}
		err := c.Watch(ctx, "shop", "deployments", "nope", tapapi.Request{}, func(tapapi.Event) bool { return false })
		if err == nil || !strings.Contains(err.Error(), "deployment nope not found") {
			t.Errorf("got %v, want deployment nope not found", err)
		}
	})
}
