package inboundpolicy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/kubetest/crds"
	"github.com/weftmesh/weft/internal/policyclient"
)

const (
	clientID   = "client.shop.serviceaccount.identity.linkerd.cluster.local"
	intruderID = "intruder.shop.serviceaccount.identity.linkerd.cluster.local"
)

// cluster is a real API server with Linkerd's CRDs, the shop namespace
// (default deny) and its web-0 pod, an index fed by informers, and the
// InboundPolicies service on loopback.
type cluster struct {
	dyn    dynamic.Interface
	a      *kubetest.APIServer
	api    policyv1.InboundPoliciesClient
	stop   func()
	cancel context.CancelFunc
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	a := kubetest.StartAPIServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dyn, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds.Install(t, a.Config, nil)
	c := a.Client.CoreV1()
	if _, err := c.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Annotations: map[string]string{compat.AnnotationDefaultInboundPolicy: "deny"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	no := false
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", AutomountServiceAccountToken: &no, Containers: []corev1.Container{{
			Name: "app", Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
		}}}}
	if _, err := c.Pods("shop").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	idx := NewIndex(Options{ControllerNamespace: "linkerd", TrustDomain: "cluster.local", Default: authz.AllUnauthenticated})
	w := NewWatcher(a.Client, dyn, idx, log)
	go w.Run(ctx)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	policyv1.RegisterInboundPoliciesServer(srv, NewServer(idx, w.Synced, log))
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &cluster{dyn: dyn, a: a, api: policyv1.NewInboundPoliciesClient(conn), stop: srv.Stop, cancel: cancel}
}

// apply creates or replaces a policy.linkerd.io object given as YAML.
func (c *cluster) apply(t *testing.T, gvr schema.GroupVersionResource, y string) {
	t.Helper()
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(y), &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetAPIVersion(gvr.GroupVersion().String())
	for _, k := range kinds {
		if k.gvr == gvr {
			obj.SetKind(k.kind)
		}
	}
	ri := c.dyn.Resource(gvr).Namespace("shop")
	if old, err := ri.Get(context.Background(), obj.GetName(), metav1.GetOptions{}); err == nil {
		obj.SetResourceVersion(old.GetResourceVersion())
		if _, err := ri.Update(context.Background(), &obj, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := ri.Create(context.Background(), &obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// next receives policies until cond holds (10 s at most).
func next(t *testing.T, s policyv1.InboundPolicies_WatchClient, cond func(*authz.Policy) bool) *authz.Policy {
	t.Helper()
	type res struct {
		m   *policyv1.InboundPolicy
		err error
	}
	timeout := time.After(10 * time.Second)
	for {
		ch := make(chan res, 1)
		go func() { m, err := s.Recv(); ch <- res{m, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("watch: %v", r.err)
			}
			pp, err := policyclient.FromProto(r.m)
			if err != nil {
				t.Fatalf("policy does not decode: %v", err)
			}
			p, err := authz.Compile(pp, nil)
			if err != nil {
				t.Fatalf("policy does not compile: %v", err)
			}
			if cond(p) {
				return p
			}
		case <-timeout:
			t.Fatal("the expected policy was not streamed within 10 s")
		}
	}
}

var peer = netip.MustParseAddr("198.18.0.7")

func allows(p *authz.Policy, id, method, path string) bool {
	return p.CheckRequest(authz.Client{Addr: peer, Identity: id}, method, path, nil).Allowed
}

func (c *cluster) waitEvent(t *testing.T, name, contains string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := c.a.Client.CoreV1().Events("shop").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err == nil {
			for _, e := range evs.Items {
				if e.Reason == EventReasonInvalid && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, contains) {
					return
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("no %s Warning Event on %s mentioning %q", EventReasonInvalid, name, contains)
}

func TestInboundPolicyFromAPIServer(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.api.Watch(ctx, &policyv1.InboundRequest{Workload: "shop:web-0", Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	// No Server: the namespace's default, deny, with the readiness probe.
	p := next(t, s, func(p *authz.Policy) bool { return p.Source().Server == authz.DefaultMeta("deny") })
	if !allows(p, "", "GET", "/ready") || allows(p, clientID, "GET", "/") {
		t.Errorf("default deny: probe must pass and everything else be denied; probes %v", p.Source().ProbePaths)
	}

	start := time.Now()
	c.apply(t, ServersGVR, `
metadata: {name: web-http}
spec: {podSelector: {matchLabels: {app: web}}, port: http, proxyProtocol: HTTP/1}`)
	c.apply(t, MeshTLSAuthnGVR, `
metadata: {name: client-mtls}
spec: {identityRefs: [{kind: ServiceAccount, name: client}]}`)
	c.apply(t, AuthzPolicyGVR, `
metadata: {name: web-authz}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: client-mtls}]`)
	p = next(t, s, func(p *authz.Policy) bool { return allows(p, clientID, "GET", "/") })
	t.Logf("the Server and its authorization reached the stream in %v", time.Since(start).Round(time.Millisecond))
	if got := p.Source().Server; got.Name != "web-http" || got.Kind != "server" || p.Protocol() != authz.ProtocolHTTP1 {
		t.Errorf("server %+v protocol %s", got, p.Protocol())
	}
	if allows(p, intruderID, "GET", "/") || allows(p, "", "GET", "/") {
		t.Error("the Server admits an intruder or plaintext")
	}
	if !allows(p, "", "GET", "/ready") {
		t.Error("kubelet's probe is refused on a Server without routes")
	}

	// Bad input: each is reported on its resource; the good policy stands
	// and nothing widens.
	c.apply(t, AuthzPolicyGVR, `
metadata: {name: ghost-authz}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: ghost}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: client-mtls}]`)
	c.apply(t, NetworkAuthnGVR, `
metadata: {name: bad-cidr}
spec: {networks: [{cidr: 198.18.0.0/33}]}`)
	c.apply(t, AuthzPolicyGVR, `
metadata: {name: by-bad-cidr}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: NetworkAuthentication, name: bad-cidr}]`)
	c.apply(t, MeshTLSAuthnGVR, `
metadata: {name: bad-identity}
spec: {identities: ["spiffe://cluster.local/ns/shop/sa/intruder"]}`)
	c.apply(t, AuthzPolicyGVR, `
metadata: {name: by-bad-identity}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: bad-identity}]`)
	c.waitEvent(t, "ghost-authz", "Server shop/ghost not found")
	c.waitEvent(t, "bad-cidr", "invalid CIDR")
	c.waitEvent(t, "by-bad-cidr", "NetworkAuthentication shop/bad-cidr is invalid")
	c.waitEvent(t, "bad-identity", "spiffe://")
	c.waitEvent(t, "by-bad-identity", "MeshTLSAuthentication shop/bad-identity is invalid")
	pp, err := c.current("shop", "web-0", 8080)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pp.Authorizations); n != 1 || pp.Authorizations[0].Meta.Name != "web-authz" {
		t.Errorf("authorizations %+v, want only web-authz", pp.Authorizations)
	}
	// Nothing fails open: the client is still let in, an intruder, a
	// plaintext client and the identity the bad MeshTLSAuthentication
	// meant are not.
	if bad, err := authz.Compile(pp, nil); err != nil {
		t.Errorf("the policy with bad input around it does not compile: %v", err)
	} else if !allows(bad, clientID, "GET", "/") || allows(bad, intruderID, "GET", "/") || allows(bad, "", "GET", "/") {
		t.Error("bad input changed who is let in")
	}

	// Route-scoped: GET /public for everyone, /admin for the client only.
	c.apply(t, NetworkAuthnGVR, `
metadata: {name: everyone}
spec: {networks: [{cidr: 0.0.0.0/0}, {cidr: "::/0"}]}`)
	c.apply(t, HTTPRoutesGVR, `
metadata: {name: public}
spec:
  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /public}, method: GET}]}]`)
	c.apply(t, HTTPRoutesGVR, `
metadata: {name: admin}
spec:
  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /admin}}]}]`)
	c.apply(t, AuthzPolicyGVR, `
metadata: {name: public-everyone}
spec:
  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: public}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: NetworkAuthentication, name: everyone}]`)
	c.apply(t, AuthzPolicyGVR, `
metadata: {name: web-authz}
spec:
  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: admin}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: client-mtls}]`)
	p = next(t, s, func(p *authz.Policy) bool {
		return allows(p, "", "GET", "/public/x") && !allows(p, clientID, "GET", "/")
	})
	for _, tt := range []struct {
		id, method, path string
		want             bool
	}{
		{"", "GET", "/public/index.html", true}, {intruderID, "GET", "/public", true}, {"", "POST", "/public", false},
		{clientID, "GET", "/admin/users", true}, {intruderID, "GET", "/admin/users", false}, {"", "GET", "/admin", false},
		{clientID, "GET", "/other", false},
	} {
		if got := allows(p, tt.id, tt.method, tt.path); got != tt.want {
			t.Errorf("%q %s %s: allowed=%v, want %v", tt.id, tt.method, tt.path, got, tt.want)
		}
	}

	// A rate limit on the Server.
	c.apply(t, RateLimitPolicyGVR, `
metadata: {name: web-rl}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  total: {requestsPerSecond: 20}
  identity: {requestsPerSecond: 5}
  overrides: [{requestsPerSecond: 10, clientRefs: [{kind: ServiceAccount, name: client}]}]`)
	p = next(t, s, func(p *authz.Policy) bool { return p.Source().RateLimit != nil })
	rl := p.Source().RateLimit
	if rl.Total != 20 || rl.Identity != 5 || len(rl.Overrides) != 1 || rl.Overrides[0].Clients[0] != clientID {
		t.Errorf("rate limit %+v", rl)
	}
}

// current reads the policy the service streams now, through a fresh watch.
func (c *cluster) current(ns, pod string, port uint16) (*authz.PortPolicy, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.api.Watch(ctx, &policyv1.InboundRequest{Workload: ns + ":" + pod, Port: uint32(port)})
	if err != nil {
		return nil, err
	}
	m, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return policyclient.FromProto(m)
}

// TestClientKeepsLastPolicy: the proxy's client follows the stream and
// keeps the last policy when the control plane goes away.
func TestClientKeepsLastPolicy(t *testing.T) {
	c := startCluster(t)
	c.apply(t, ServersGVR, `
metadata: {name: web-http}
spec: {podSelector: {matchLabels: {app: web}}, port: 8080, accessPolicy: all-authenticated}`)
	static, err := authz.NewStatic(authz.StaticConfig{Default: authz.AllUnauthenticated})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := policyclient.New(ctx, c.api, policyclient.Options{Workload: "shop:web-0", Static: static,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), FirstWait: 5 * time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for cl.Policy(8080).Source().Server.Name != "web-http" {
		if time.Now().After(deadline) {
			t.Fatalf("client policy %+v, want the Server's", cl.Policy(8080).Source().Server)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.stop()
	time.Sleep(500 * time.Millisecond)
	p := cl.Policy(8080)
	if p.Source().Server.Name != "web-http" || allows(p, "", "GET", "/") || !allows(p, intruderID, "GET", "/") {
		t.Errorf("after the control plane stopped: server %q, plaintext allowed=%v; want the last policy (all-authenticated)",
			p.Source().Server.Name, allows(p, "", "GET", "/"))
	}
}

// TestWithoutCRDs: on a cluster without Linkerd's policy CRDs the index
// still syncs (there are no such resources) and streams the default policy.
func TestWithoutCRDs(t *testing.T) {
	a := kubetest.StartAPIServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dyn, err := dynamic.NewForConfig(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	no := false
	if _, err := a.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: &no, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	idx := NewIndex(Options{ControllerNamespace: "linkerd", TrustDomain: "cluster.local", Default: authz.ClusterAuthenticated})
	w := NewWatcher(a.Client, dyn, idx, log)
	go w.Run(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for !w.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("the index did not sync without the CRDs")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		p, err := idx.Policy("shop", "web-0", 8080)
		if err == nil {
			if p.Server != authz.DefaultMeta(string(authz.ClusterAuthenticated)) {
				t.Errorf("policy %+v, want the cluster default", p.Server)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no policy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The CRDs installed later: their resources are watched without a
	// restart (a Server installed then must not be ignored).
	crds.Install(t, a.Config, nil)
	c := &cluster{dyn: dyn}
	c.apply(t, ServersGVR, `
metadata: {name: web-http}
spec: {podSelector: {}, port: 8080, accessPolicy: deny}`)
	deadline = time.Now().Add(20 * time.Second)
	for {
		p, err := idx.Policy("shop", "web-0", 8080)
		if err == nil && p.Server.Name == "web-http" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Server created after its CRD was installed never applied: %+v, %v", p, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
