//go:build e2e

package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// policyApp: a namespace whose default inbound policy is deny, a meshed
// server (readiness probe on /ready), meshed clients with the
// ServiceAccounts client and intruder, and an unmeshed pod.
var policyApp = yamlDocs(
	testNamespace{Annotations: "config.linkerd.io/default-inbound-policy: deny", SAs: []string{"server", "client", "intruder"}}.yaml(),
	testApp{Name: "server", Replicas: 1, SA: "server", Image: "%[2]s", Ports: "{name: http, containerPort: 8080}", More: "        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 2}\n"}.yaml(),
	testService{Name: "server", Ports: "{name: http, port: 8080, targetPort: 8080}"}.yaml(),
	testClient{Name: "client", SA: "client"}.yaml(),
	testClient{Name: "intruder", SA: "intruder"}.yaml(),
	testClient{Name: "plain", Annotations: "linkerd.io/inject: disabled"}.yaml())

// policyServer: the Server on the app port, and the client's mTLS identity.
const policyServer = `apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: web-http, namespace: %[1]s}
spec: {podSelector: {matchLabels: {app: server}}, port: http, proxyProtocol: HTTP/1}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: client-mtls, namespace: %[1]s}
spec: {identityRefs: [{kind: ServiceAccount, name: client}]}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: NetworkAuthentication
metadata: {name: everyone, namespace: %[1]s}
spec: {networks: [{cidr: 0.0.0.0/0}, {cidr: "::/0"}]}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-authz, namespace: %[1]s}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: client-mtls}]
`

// policyRoutes: /public (and the probe path) for everyone, /admin and
// /data for the client; web-authz now targets the admin route only.
// dataAccess is the data route's authentication (switched under traffic).
const policyRoutes = `apiVersion: policy.linkerd.io/v1beta3
kind: HTTPRoute
metadata: {name: public, namespace: %[1]s}
spec:
  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /public}, method: GET}, {path: {type: Exact, value: /ready}}]}]
---
apiVersion: policy.linkerd.io/v1beta3
kind: HTTPRoute
metadata: {name: admin, namespace: %[1]s}
spec:
  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /admin}}]}]
---
apiVersion: policy.linkerd.io/v1beta3
kind: HTTPRoute
metadata: {name: data, namespace: %[1]s}
spec:
  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /data}}]}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: public-everyone, namespace: %[1]s}
spec:
  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: public}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: NetworkAuthentication, name: everyone}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-authz, namespace: %[1]s}
spec:
  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: admin}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: client-mtls}]
`

const dataAccess = `apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: data-access, namespace: %[1]s}
spec:
  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: data}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: %[2]s, name: %[3]s}]
`

// policyOpaque: a server-speaks-first application (a banner at once, as
// SMTP) behind a Server declaring proxyProtocol opaque, authorized for the
// client's identity only.
var policyOpaque = yamlDocs(
	testApp{Name: "mail", Replicas: 1, SA: "server", Container: "mail", Image: "%[2]s", Args: `"-tcp-banner", "0.0.0.0:2525"`, Ports: "{name: smtp, containerPort: 2525}"}.yaml(),
	testService{Name: "mail", Ports: "{name: smtp, port: 25, targetPort: smtp}"}.yaml(),
	`apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: mail-smtp, namespace: %[1]s}
spec: {podSelector: {matchLabels: {app: mail}}, port: smtp, proxyProtocol: opaque}
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: mail-authz, namespace: %[1]s}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: mail-smtp}
  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: client-mtls}]
`)

// TestInboundPolicy is the proof on the cluster: default deny,
// a Server with a MeshTLSAuthentication for the client, route-scoped
// policy, a policy change under traffic, the server pod staying Ready,
// and a server-speaks-first application behind an opaque Server.
func TestInboundPolicy(t *testing.T) {
	begin := time.Now()
	// Linkerd's policy CRDs (the control plane chart does not carry them).
	kubectl(t, helm(t, "template", "weft-crds", "../../charts/weft-crds", "-n", "linkerd"), "apply", "-f", "-")
	kubectl(t, "", "wait", "--for=condition=Established", "crd/servers.policy.linkerd.io", "crd/authorizationpolicies.policy.linkerd.io",
		"crd/httproutes.policy.linkerd.io", "--timeout=60s")
	installControlPlane(t)
	t.Logf("control plane installed in %v", time.Since(begin).Round(time.Second))
	ns := fmt.Sprintf("policy-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(policyApp, ns, clientImage), "apply", "-f", "-")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- pods:\n%s", tryOutput(t, "-n", ns, "get", "pods", "-o", "wide"))
			t.Logf("--- server proxy logs:\n%s", tryOutput(t, "-n", ns, "logs", "deploy/server", "-c", "linkerd-proxy", "--tail", "40"))
			t.Logf("--- policy controller logs:\n%s", tryOutput(t, "-n", "linkerd", "logs", "deploy/linkerd-destination", "-c", "policy", "--tail", "40"))
		}
		tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	// Under deny, kubelet's readiness probe must still pass.
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
	kubectl(t, "", "-n", ns, "wait", "pod/client", "pod/intruder", "pod/plain", "--for=condition=Ready", "--timeout=120s")
	get := func(pod, path string) (string, error) {
		return runKubectl(t, "", "-n", ns, "exec", pod, "-c", "client", "--", "/testapp", "-get", "http://server:8080"+path, "-n", "1")
	}
	status := func(pod, path string) string {
		out, err := get(pod, path)
		switch {
		case err == nil:
			return "200"
		case strings.Contains(out, "403"):
			return "403"
		case strings.Contains(out, "404"):
			return "404"
		}
		return "error: " + strings.TrimSpace(out)
	}
	if got := status("client", "/"); got != "403" {
		t.Errorf("before any Server, under deny: client got %s, want 403", got)
	}

	kubectl(t, fmt.Sprintf(policyServer, ns), "apply", "-f", "-")
	deadline := time.Now().Add(30 * time.Second)
	for status("client", "/") != "200" {
		if time.Now().After(deadline) {
			t.Fatalf("the client is not let in 30 s after its Server and authorization")
		}
		time.Sleep(500 * time.Millisecond)
	}
	out, _ := get("client", "/hello")
	if !strings.Contains(out, "client-id=client."+ns+".serviceaccount.identity.linkerd.cluster.local") {
		t.Errorf("the app did not see the client's identity in l5d-client-id: %q", out)
	}
	for pod, want := range map[string]string{"intruder": "403", "plain": "403"} {
		if got := status(pod, "/"); got != want {
			t.Errorf("%s: %s, want %s", pod, got, want)
		}
	}

	// Route-scoped policy (the probe path rides the public route).
	kubectl(t, fmt.Sprintf(policyRoutes, ns), "apply", "-f", "-")
	kubectl(t, fmt.Sprintf(dataAccess, ns, "NetworkAuthentication", "everyone"), "apply", "-f", "-")
	deadline = time.Now().Add(30 * time.Second)
	for status("intruder", "/public") != "200" || status("intruder", "/data") != "200" {
		if time.Now().After(deadline) {
			t.Fatalf("routes not in force after 30 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, tt := range []struct{ pod, path, want string }{
		{"intruder", "/public/index.html", "200"}, {"plain", "/public", "200"}, {"client", "/admin", "200"},
		{"intruder", "/admin", "403"}, {"plain", "/admin/users", "403"}, {"client", "/nowhere", "404"},
	} {
		if got := status(tt.pod, tt.path); got != tt.want {
			t.Errorf("%s GET %s: %s, want %s", tt.pod, tt.path, got, tt.want)
		}
	}

	// A policy applied while traffic flows: the intruder polls /data every
	// 20 ms; data-access switches to the client's identity.
	cmd := exec.Command("kubectl", "--kubeconfig", kubeconfig(t), "-n", ns, "exec", "intruder", "-c", "client", "--",
		"/testapp", "-get", "http://server:8080/data", "-n", "1000", "-interval", "20ms")
	var outBuf strings.Builder
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(3 * time.Second)
	kubectl(t, fmt.Sprintf(dataAccess, ns, "MeshTLSAuthentication", "client-mtls"), "apply", "-f", "-")
	applied := time.Now()
	select {
	case <-done:
		took := time.Since(applied)
		t.Logf("the intruder's traffic was refused %v after the policy change was applied (kubectl exec's exit included)", took.Round(time.Millisecond))
		if !strings.Contains(outBuf.String(), "403") {
			t.Errorf("the polling stopped without a 403: %s", tail(outBuf.String()))
		}
		if took > 2*time.Second {
			t.Errorf("took %v, want about 1 s", took)
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("traffic still allowed 15 s after the policy change")
	}

	// Rate limits: total 20 rps against 50 rps; then 10 rps per identity
	// with the client's override at 30, both clients at 50 rps.
	tallyRate := func(pod string) float64 {
		// 2 s of warm-up (the one-second burst drains), then 3 s counted.
		out := kubectl(t, "", "-n", ns, "exec", pod, "-c", "client", "--", "/testapp", "-tally", "-tally-skip", "100",
			"-get", "http://server:8080/public/x", "-n", "250", "-interval", "20ms")
		var ok int
		for _, l := range strings.Split(out, "\n") {
			fmt.Sscanf(l, "status=200 count=%d", &ok)
		}
		t.Logf("%s at 50 rps: %s", pod, strings.Join(strings.Fields(out), " "))
		return float64(ok) / 3
	}
	kubectl(t, fmt.Sprintf(`apiVersion: policy.linkerd.io/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: {name: web-rl, namespace: %s}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  total: {requestsPerSecond: 20}
`, ns), "apply", "-f", "-")
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(kubectl(t, "", "-n", ns, "exec", "client", "-c", "client", "--", "/testapp", "-tally", "-get", "http://server:8080/public/x", "-n", "60", "-interval", "5ms"), "status=429") {
		if time.Now().After(deadline) {
			t.Fatal("the rate limit is not in force after 30 s")
		}
	}
	if got := tallyRate("client"); got < 18 || got > 22 {
		t.Errorf("total.requestsPerSecond 20: the client got %.1f rps of 50 through, want 20 ± 10%%", got)
	}
	kubectl(t, fmt.Sprintf(`apiVersion: policy.linkerd.io/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: {name: web-rl, namespace: %s}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  identity: {requestsPerSecond: 10}
  overrides: [{requestsPerSecond: 30, clientRefs: [{kind: ServiceAccount, name: client}]}]
`, ns), "apply", "-f", "-")
	time.Sleep(2 * time.Second)
	rates := map[string]float64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pod := range []string{"client", "intruder"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := tallyRate(pod)
			mu.Lock()
			rates[pod] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	if c, i := rates["client"], rates["intruder"]; c < 27 || c > 33 || i < 9 || i > 11 {
		t.Errorf("identity 10 rps, client's override 30: client %.1f rps, intruder %.1f rps (± 10%%)", c, i)
	}
	if n := sum(t, proxyMetrics(t, ns, serverPod(t, ns)), "inbound_http_local_ratelimit_total", `ratelimit_name="web-rl"`); n == 0 {
		t.Error("no inbound_http_local_ratelimit_total{ratelimit_name=\"web-rl\"}")
	}
	kubectl(t, "", "-n", ns, "delete", "httplocalratelimitpolicies.policy.linkerd.io", "web-rl")

	// audit: the Server lets everything through and counts what it would deny.
	kubectl(t, "", "-n", ns, "patch", "servers.policy.linkerd.io", "web-http", "--type=merge", "-p", `{"spec":{"accessPolicy":"audit"}}`)
	deadline = time.Now().Add(30 * time.Second)
	for status("intruder", "/admin") != "200" {
		if time.Now().After(deadline) {
			t.Fatalf("accessPolicy audit: the intruder is still refused after 30 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := status("plain", "/nowhere"); got != "404" {
		t.Errorf("audit: a path no route matches got %s, want 404", got)
	}

	if ready := kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=server", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}`); ready != "True" {
		t.Errorf("the server pod is not Ready (%q): kubelet's probe was refused", ready)
	}
	m := proxyMetrics(t, ns, serverPod(t, ns))
	if sum(t, m, "inbound_http_authz_allow_total", `srv_name="web-http"`, `route_name="admin"`, `authz_kind="default"`, `authz_name="audit"`) == 0 {
		t.Errorf("audit: no would-be denial counted (authz_name=\"audit\"):\n%s", grepLines(m, "inbound_http_authz"))
	}
	if sum(t, m, "inbound_http_authz_deny_total", `srv_name="web-http"`) == 0 || sum(t, m, "inbound_http_authz_allow_total", `srv_name="web-http"`, `route_name="admin"`) == 0 {
		t.Errorf("authorization metrics missing:\n%s", grepLines(m, "inbound_http_authz"))
	}

	testOpaqueServer(t, ns)
}

// testOpaqueServer: behind a Server declaring proxyProtocol opaque, a
// server-speaks-first application answers the meshed client at once (the
// destination service marks the port opaque, so neither proxy waits for
// the client to speak), over mTLS (the opaque transport) and authorized by
// the client's identity; an intruder and an unmeshed pod are refused.
func testOpaqueServer(t *testing.T, ns string) {
	start := time.Now()
	kubectl(t, fmt.Sprintf(policyOpaque, ns, clientImage), "apply", "-f", "-")
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/mail", "--timeout=120s")
	banner := func(pod string) (string, error) {
		return runKubectl(t, "", "-n", ns, "exec", pod, "-c", "client", "--", "/testapp", "-tcp-read-banner", "mail:25")
	}
	// after reads the time testapp measured, in ms (-1: no banner).
	after := func(out string) int {
		i := strings.Index(out, "after=")
		if i < 0 {
			return -1
		}
		var ms int
		fmt.Sscanf(out[i:], "after=%dms", &ms)
		return ms
	}
	var out string
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ = banner("client")
		if ms := after(out); ms >= 0 && ms < 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("opaque Server: no prompt banner for the client 60 s after applying it; last: %s", tail(out))
		}
		time.Sleep(time.Second)
	}
	t.Logf("opaque Server: the client's banner came in %d ms (%v after the apply): %s", after(out), time.Since(start).Round(time.Second), strings.TrimSpace(out))
	var times []int
	for range 5 {
		out, err := banner("client")
		if ms := after(out); err != nil || ms < 0 || ms >= 1000 {
			t.Errorf("client: %v %s, want the banner within 1 s (detection would wait 10 s)", err, tail(out))
		} else {
			times = append(times, ms)
		}
	}
	t.Logf("opaque Server: 5 more banners in %v ms", times)
	for _, pod := range []string{"intruder", "plain"} {
		out, err := banner(pod)
		if err == nil || strings.Contains(out, "banner=") {
			t.Errorf("%s reached the opaque Server's application: %s", pod, tail(out))
		}
	}
	pod := strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=mail", "-o", "name"))[0], "pod/")
	m := proxyMetrics(t, ns, pod)
	clientID := "client." + ns + ".serviceaccount.identity.linkerd.cluster.local"
	allowed := sum(t, m, "inbound_tcp_authz_allow_total", `srv_name="mail-smtp"`, `authz_name="mail-authz"`, `tls="true"`, `client_id="`+clientID+`"`)
	denied := sum(t, m, "inbound_tcp_authz_deny_total", `srv_name="mail-smtp"`)
	t.Logf("opaque Server: inbound_tcp_authz_allow_total{client, tls=true} %v, inbound_tcp_authz_deny_total %v", allowed, denied)
	if allowed < 6 || denied < 2 {
		t.Errorf("opaque Server metrics: allowed over mTLS %v (want ≥ 6), denied %v (want ≥ 2):\n%s", allowed, denied, grepLines(m, "inbound_tcp_authz"))
	}
}

func serverPod(t *testing.T, ns string) string {
	return strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=server", "-o", "name"))[0], "pod/")
}

func tail(s string) string {
	if len(s) > 400 {
		return "…" + s[len(s)-400:]
	}
	return s
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
