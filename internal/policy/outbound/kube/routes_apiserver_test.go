package kube_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/kubetest/crds"
	"github.com/weftmesh/weft/internal/policy/outbound"
	"github.com/weftmesh/weft/internal/policy/outbound/kube"
	"github.com/weftmesh/weft/internal/poll"
	"github.com/weftmesh/weft/internal/route"
)

var (
	gwHTTP  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	gwGRPC  = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"}
	l5dHTTP = schema.GroupVersionResource{Group: "policy.linkerd.io", Version: "v1beta3", Resource: "httproutes"}
)

// seed reads a seed-003 manifest from the outbound package's testdata,
// placed in ns when it names none (kubectl apply -n ns).
func seed(t *testing.T, file, ns string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.Contains(doc, "\n  namespace:") {
		doc = strings.Replace(doc, "metadata:\n", "metadata:\n  namespace: "+ns+"\n", 1)
	}
	return doc
}

const parentRef = `  parentRefs: [{name: projects-vastaya-svc, kind: Service, group: core, port: 80}]
`

func TestRoutesFromTheAPIServer(t *testing.T) {
	c := startCluster(t)
	c.namespace(t, "vastaya")
	svc := c.service(t, "vastaya", "projects-vastaya-svc", nil)
	c.service(t, "vastaya", "projects-canary-vastaya-svc", nil)
	const stable = "projects-vastaya-svc.vastaya.svc.cluster.local:80"
	byName := c.watch(t, stable, `{"ns":"web","nodeName":"n1","pod":"client-1"}`)
	byIP := c.watch(t, svc.Spec.ClusterIP+":80", "")
	for _, s := range []*stream{byName, byIP} {
		s.await(t, "the Service's table without routes", func(tab *route.Table) bool {
			return tab != nil && len(tab.HTTP) == 0 && tab.Parent.Authority == stable
		})
	}

	// Seed 003's canary, then its blue-green switch (through v1beta1).
	c.apply(t, seed(t, "seed003-canary.yaml", "vastaya"))
	for _, s := range []*stream{byName, byIP} {
		s.await(t, "the 10/90 canary", func(tab *route.Table) bool {
			return weightsOf(tab, "project-vastaya-split") == "projects-vastaya-svc=10,projects-canary-vastaya-svc=90"
		})
	}
	poll.Until(t, 20*time.Second, "the canary route accepted", func() bool {
		got, _ := c.conditions(t, gwHTTP, "vastaya", "project-vastaya-split")
		return got["Accepted"] == "True/Accepted" && got["ResolvedRefs"] == "True/ResolvedRefs" && got["Conflicted"] == "False/NoConflict"
	})
	c.apply(t, seed(t, "seed003-bluegreen.yaml", "vastaya"))
	byName.await(t, "the 0/1 switch", func(tab *route.Table) bool {
		return weightsOf(tab, "project-vastaya-split") == "projects-vastaya-svc=0,projects-canary-vastaya-svc=1"
	})

	// Bad input: each route gets a clear condition; the good route stays.
	bad := []struct {
		name, doc string
		gvr       schema.GroupVersionResource
		cond      string // type=Status/Reason
		message   string
		inTable   bool
	}{
		{"unsupported-filter", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: unsupported-filter, namespace: vastaya}
spec:
` + parentRef + `  rules:
  - matches: [{path: {type: PathPrefix, value: /ext}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Thing, name: x}}]
`, gwHTTP, "Accepted=False/UnsupportedValue", `unsupported filter "ExtensionRef"`, false},
		{"missing-backend", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend, namespace: vastaya}
spec:
` + parentRef + `  rules:
  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nowhere, port: 80}]
`, gwHTTP, "ResolvedRefs=False/BackendNotFound", "vastaya/nowhere", true},
		{"unknown-kind", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: unknown-kind, namespace: vastaya}
spec:
` + parentRef + `  rules:
  - matches: [{path: {type: PathPrefix, value: /deploy}}]
    backendRefs: [{group: apps, kind: Deployment, name: web, port: 80}]
`, gwHTTP, "ResolvedRefs=False/InvalidKind", "apps/Deployment", true},
		{"huge-regex", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: huge-regex, namespace: vastaya}
spec:
` + parentRef + `  rules:
  - matches: [{path: {type: RegularExpression, value: "/` + strings.Repeat("[a-z]{1,90}", 40) + `"}}]
`, gwHTTP, "Accepted=False/UnsupportedValue", "regular expression too large", false},
		{"linkerd-bad-regex", `apiVersion: policy.linkerd.io/v1beta2
kind: HTTPRoute
metadata: {name: linkerd-bad-regex, namespace: vastaya}
spec:
` + parentRef + `  rules:
  - matches: [{headers: [{name: x-user, type: RegularExpression, value: "(unclosed"}]}]
`, l5dHTTP, "Accepted=False/UnsupportedValue", "invalid regular expression", false},
		{"conflicting", `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: conflicting, namespace: vastaya}
spec:
` + parentRef + `  rules:
  - backendRefs: [{name: projects-canary-vastaya-svc, port: 80}]
`, gwHTTP, "Conflicted=True/MatchConflict", "vastaya/project-vastaya-split", true},
	}
	for _, b := range bad {
		time.Sleep(1100 * time.Millisecond) // distinct creation seconds: "older" is well defined
		c.apply(t, b.doc)
	}
	for _, b := range bad {
		typ, want, _ := strings.Cut(b.cond, "=")
		poll.Until(t, 20*time.Second, b.name+" "+b.cond, func() bool {
			got, msgs := c.conditions(t, b.gvr, "vastaya", b.name)
			return got[typ] == want && strings.Contains(msgs, b.message)
		})
	}
	tab := byName.await(t, "the table with the good routes only", func(tab *route.Table) bool {
		return routeNames(tab) == "project-vastaya-split,missing-backend,unknown-kind,conflicting"
	})
	if w := weightsOf(tab, "project-vastaya-split"); w != "projects-vastaya-svc=0,projects-canary-vastaya-svc=1" {
		t.Errorf("the seed route changed under bad input: %s", w)
	}

	// A route whose only parent is a Gateway is another controller's: no
	// status from us, and in no table.
	c.apply(t, `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: for-a-gateway, namespace: vastaya}
spec:
  parentRefs: [{name: some-gateway}]
  rules: [{backendRefs: [{name: projects-vastaya-svc, port: 80}]}]
`)
	// A GRPCRoute with a method match.
	c.apply(t, `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc-split, namespace: vastaya}
spec:
`+parentRef+`  rules:
  - matches: [{method: {service: vastaya.Projects, method: List}}]
    backendRefs: [{name: projects-canary-vastaya-svc, port: 80}]
`)
	tab = byName.await(t, "the GRPCRoute", func(tab *route.Table) bool { return len(tab.GRPC) == 1 })
	if m := tab.GRPC[0].Rules[0].Matches; len(m) != 1 || m[0].Service != "vastaya.Projects" || m[0].Method != "List" {
		t.Errorf("GRPCRoute matches = %+v", m)
	}
	if strings.Contains(routeNames(tab), "for-a-gateway") {
		t.Errorf("a Gateway's route is in the Service's table: %s", routeNames(tab))
	}
	if got, _ := c.conditions(t, gwHTTP, "vastaya", "for-a-gateway"); len(got) != 0 {
		t.Errorf("status written on a Gateway's route: %v", got)
	}

	// Service annotations become the table's defaults and accrual.
	s, err := c.client.CoreV1().Services("vastaya").Get(context.Background(), "projects-vastaya-svc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Annotations = map[string]string{"timeout.linkerd.io/request": "3s", "retry.linkerd.io/http": "503", "retry.linkerd.io/limit": "2",
		"balancer.linkerd.io/failure-accrual": "consecutive", "balancer.linkerd.io/failure-accrual-consecutive-max-failures": "4"}
	if _, err := c.client.CoreV1().Services("vastaya").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	tab = byIP.await(t, "the Service's annotations", func(tab *route.Table) bool {
		return tab.Defaults.Timeouts.Request == 3*time.Second && tab.Defaults.Retry != nil && tab.Accrual != nil
	})
	if r := tab.Defaults.Retry; r.Limit != 2 || len(r.HTTPStatuses) != 1 || r.HTTPStatuses[0] != 503 || tab.Accrual.MaxFailures != 4 {
		t.Errorf("defaults = %+v, accrual %+v", r, tab.Accrual)
	}

	// The missing backend goes out without an authority (the proxy answers
	// 500 for its share) until it appears: then its route's refs resolve.
	backendAuthority := func(tab *route.Table) string {
		for _, r := range tab.HTTP {
			if r.Meta.Name == "missing-backend" {
				return r.Rules[0].Backends[0].Authority
			}
		}
		return "no route"
	}
	if a := backendAuthority(byName.await(t, "a table", func(*route.Table) bool { return true })); a != "" {
		t.Errorf("missing backend's authority = %q, want none", a)
	}
	c.service(t, "vastaya", "nowhere", nil)
	byName.await(t, "the backend's authority", func(tab *route.Table) bool {
		return backendAuthority(tab) == "nowhere.vastaya.svc.cluster.local:80"
	})
	poll.Until(t, 20*time.Second, "missing-backend resolved", func() bool {
		got, _ := c.conditions(t, gwHTTP, "vastaya", "missing-backend")
		return got["ResolvedRefs"] == "True/ResolvedRefs"
	})

	// Deleting the seed route takes it out; the conflict it caused is gone.
	if err := c.dyn.Resource(gwHTTP).Namespace("vastaya").Delete(context.Background(), "project-vastaya-split", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	byName.await(t, "the table without the seed route", func(tab *route.Table) bool {
		return !strings.Contains(routeNames(tab), "project-vastaya-split")
	})
	poll.Until(t, 20*time.Second, "the conflict cleared", func() bool {
		got, _ := c.conditions(t, gwHTTP, "vastaya", "conflicting")
		return got["Conflicted"] == "False/NoConflict"
	})
}

// TestCRDsInstalledAfterTheController: the route kinds are watched once
// their CRDs are served, without a restart.
func TestCRDsInstalledAfterTheController(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	dyn, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ix := outbound.NewIndex("cluster.local", quiet)
	ad, err := kube.Start(ctx, a.Client, dyn, ix, quiet)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "Services synced", ad.Ready)
	crds.Install(t, a.Config, nil)
	c := &cluster{client: a.Client, dyn: dyn, ix: ix, ad: ad}
	c.namespace(t, "vastaya")
	c.service(t, "vastaya", "projects-vastaya-svc", nil)
	c.service(t, "vastaya", "projects-canary-vastaya-svc", nil)
	c.apply(t, seed(t, "seed003-canary.yaml", "vastaya"))
	poll.Until(t, 30*time.Second, "the route in the table", func() bool {
		tab := ix.Table(outbound.WatchKey{Target: "projects-vastaya-svc.vastaya.svc.cluster.local:80"})
		return tab != nil && len(tab.HTTP) == 1
	})
	poll.Until(t, 20*time.Second, "its status", func() bool {
		got, _ := c.conditions(t, gwHTTP, "vastaya", "project-vastaya-split")
		return got["Accepted"] == "True/Accepted"
	})
}
