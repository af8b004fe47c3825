package viz

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/kubetest/crds"
	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// routesYAML attaches two HTTPRoutes to Service api port 80: books
// (/books…) and rest (everything else), so that every request web sends
// is on a named route.
const routesYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: books, namespace: shop}
spec:
  parentRefs: [{group: core, kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /books}}]
    backendRefs: [{name: api, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: rest, namespace: shop}
spec:
  parentRefs: [{group: core, kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: api, port: 80}]
`

// startPolicy starts a real kube-apiserver with Weft's CRDs, namespace
// shop, Service api and the routes above, and the policy controller on it;
// it returns the controller's gRPC address for web's proxy.
func startPolicy(t *testing.T, m *vizMesh) string {
	t.Helper()
	m.kube = kubetest.StartAPIServer(t)
	crds.Install(t, m.kube.Config, nil)
	ctx := context.Background()
	c := m.kube.Client
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(m.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	for _, doc := range strings.Split(routesYAML, "---\n") {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(gvr).Namespace("shop").Create(ctx, &obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("HTTPRoute %s: %v", obj.GetName(), err)
		}
	}
	a := proctest.StartListening(t, "policy", nil, m.bin+"/weft-controller", "policy", "--plaintext", "--kubeconfig", m.kube.Kubeconfig,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	admin := a["policy admin server"]
	waitReady(t, "http://"+admin+"/ready")
	m.controllers = append(m.controllers, scrapeTarget{addr: admin, ns: "linkerd", pod: "linkerd-destination-0", container: "policy", port: "admin-http"})
	return a["policy gRPC server"]
}

// withinTol asserts got is within tol (a share) of want.
func withinTol(t *testing.T, what string, got *float64, want, tol float64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no value, want %.3f", what, want)
		return
	}
	if math.Abs(*got-want) > tol*want {
		t.Errorf("%s = %.3f, want %.3f ± %.0f %%", what, *got, want, tol*100)
	} else {
		t.Logf("%s = %.3f (counted %.3f)", what, *got, want)
	}
}

// checkRoutes compares viz routes, for web's proxies and for svc/api,
// with what the client counted per route in the window ending at.
func checkRoutes(t *testing.T, m *vizMesh, tr *traffic, at time.Time) {
	ctx := context.Background()
	c := &metricsapi.Client{Base: m.apiURL}
	want := map[string][2]int{}
	for _, r := range []struct {
		name  string
		books bool
	}{{"books", true}, {"rest", false}} {
		total, ok := tr.count(at.Add(-window), at, func(i int) bool { return tr.books[i] == r.books })
		want[r.name] = [2]int{total, ok}
	}
	for _, req := range []metricsapi.RoutesRequest{
		{Kind: metricsapi.KindDeployment, Namespace: "shop", Name: "web", Window: window},
		{Kind: metricsapi.KindService, Namespace: "shop", Name: "api", Window: window},
	} {
		resp, err := c.Routes(ctx, req)
		if err != nil {
			t.Fatalf("routes %s/%s: %v", req.Kind, req.Name, err)
		}
		rows := map[string]metricsapi.RouteRow{}
		for _, r := range resp.Rows {
			rows[r.Route] = r
		}
		if len(rows) != 2 {
			t.Errorf("routes %s/%s = %+v, want books and rest", req.Kind, req.Name, resp.Rows)
		}
		for name, w := range want {
			r, ok := rows[name]
			if !ok {
				continue
			}
			if r.Parent != "api" || r.ParentNamespace != "shop" || r.ParentPort != "80" || r.RouteKind != "HTTPRoute" {
				t.Errorf("route %s = %+v, want HTTPRoute on api:80", name, r)
			}
			withinTol(t, fmt.Sprintf("%s/%s route %s rps", req.Kind, req.Name, name), r.RPS, float64(w[0])/window.Seconds(), 0.1)
			withinTol(t, fmt.Sprintf("%s/%s route %s success rate", req.Kind, req.Name, name), r.SuccessRate, float64(w[1])/float64(w[0]), 0.05)
			if r.LatencyP50Ms == nil || *r.LatencyP50Ms <= 0 || *r.LatencyP50Ms > 50 {
				t.Errorf("route %s p50 = %v ms, want in the first bucket (≤ 50 ms)", name, r.LatencyP50Ms)
			}
		}
	}
	out, err := m.weftAt(m.apiURL, "viz", "routes", "svc/api", "-n", "shop", "-t", "10s")
	t.Logf("weft viz routes svc/api -n shop:\n%s", out)
	if err != nil || !regexp.MustCompile(`(?m)^ROUTE\s+SERVICE\s+SUCCESS\s+RPS\s+LATENCY_P50`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^books\s+api\s+[0-9.]+%\s+[0-9.]+rps`).MatchString(out) {
		t.Errorf("weft viz routes: %v\n%s", err, out)
	}
}

// checkAuthz sends plaintext requests to api's inbound proxy, which
// admits only authenticated clients, and checks viz authz counts them as
// denied next to web's allowed mTLS requests.
func checkAuthz(t *testing.T, m *vizMesh) {
	const denied = 20
	send := func(n int) {
		for i := 0; i < n; i++ {
			resp, err := http.Get("http://" + m.apiInbound + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("plaintext request to api: %s, want 403", resp.Status)
			}
		}
	}
	// The first denial creates the series; increase() counts from its
	// first scrape, so the counted denials come after two scrapes.
	send(1)
	time.Sleep(2500 * time.Millisecond)
	send(denied)
	time.Sleep(5 * time.Second)
	c := &metricsapi.Client{Base: m.apiURL}
	resp, err := c.Authz(context.Background(), metricsapi.AuthzRequest{Kind: metricsapi.KindDeployment, Namespace: "shop", Name: "api", Window: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var allowed, deny *metricsapi.AuthzRow
	for i, r := range resp.Rows {
		t.Logf("authz row %+v", r)
		if r.Protocol != "http" || r.Server != "default/all-authenticated" {
			continue
		}
		if r.Authorization == "" {
			deny = &resp.Rows[i]
		} else {
			allowed = &resp.Rows[i]
		}
	}
	if deny == nil || allowed == nil {
		t.Fatalf("authz rows %+v, want allowed and denied rows of default/all-authenticated", resp.Rows)
	}
	// increase() extrapolates past the series' first and last samples
	// (by up to half a scrape interval each), so it reads a little high.
	if deny.Denied < denied*0.95 || deny.Denied > denied*1.35 {
		t.Errorf("denied requests = %.1f, want %d (up to 35 %% more: increase() extrapolates)", deny.Denied, denied)
	} else {
		t.Logf("denied requests = %.1f (sent %d)", deny.Denied, denied)
	}
	if allowed.Allowed < 100 || allowed.Authorization != "default/all-authenticated" {
		t.Errorf("allowed row %+v, want web's requests allowed by default/all-authenticated", allowed)
	}
	out, err := m.weftAt(m.apiURL, "viz", "authz", "deploy/api", "-n", "shop", "-t", "30s")
	t.Logf("weft viz authz deploy/api -n shop:\n%s", out)
	if err != nil || !regexp.MustCompile(`(?m)^ROUTE\s+SERVER\s+AUTHORIZATION\s+UNAUTHORIZED\s+RPS`).MatchString(out) ||
		!regexp.MustCompile(`(?m)default/all-authenticated\s+-\s+[0-9.]+rps`).MatchString(out) {
		t.Errorf("weft viz authz: %v\n%s", err, out)
	}
}
