//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var tapApp = yamlDocs(
	testNamespace{}.yaml(),
	testApp{Name: "server"}.yaml(),
	testService{Name: "server"}.yaml(),
	`apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers:
      - {name: client, image: weft.local/testapp:dev, imagePullPolicy: IfNotPresent,
         args: ["-get", "http://server.%[1]s.svc.cluster.local/tapped?from=client", "-n", "100000", "-interval", "100ms", "-tally"]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: tapper, namespace: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nosy, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tapper-tap-admin, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: linkerd-linkerd-viz-tap-admin}
subjects: [{kind: ServiceAccount, name: tapper, namespace: %[1]s}]
---
# tapper may reach the tap server and tap this namespace; nosy may only
# reach the tap server (the tap server itself must refuse it).
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reach-tap, namespace: linkerd-viz}
rules:
- {apiGroups: [""], resources: [services/proxy], resourceNames: [tap, "tap:8089"], verbs: [get, create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reach-tap-%[1]s, namespace: linkerd-viz}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reach-tap}
subjects:
- {kind: ServiceAccount, name: tapper, namespace: %[1]s}
- {kind: ServiceAccount, name: nosy, namespace: %[1]s}
`)

// TestVizTap: the control plane and viz installed with the CLI, a meshed
// client calling a meshed server; weft viz tap deploy/server shows the
// client's requests (mTLS, the client's identity), weft viz top tabulates
// them, and a ServiceAccount without tap rights is refused by the tap
// server with the reason.
func TestVizTap(t *testing.T) {
	buildImages(t)
	w := buildWeft(t)
	removeNamespace(t, "linkerd-viz")
	removeNamespace(t, "linkerd")
	installWithCLI(t, w)
	// The bundled Prometheus (Weft's weft-prometheus image, pods found
	// through the metrics API's HTTP service discovery), scraping every 2 s.
	viz, err := weft(t, w, "viz", "install", "--set", "prometheus.scrapeInterval="+scrapeInterval.String(), "--set", "grafana.dashboards=false")
	if err != nil {
		t.Fatalf("weft viz install: %v\n%s", err, viz)
	}
	kubectl(t, viz, "apply", "-f", "-")
	t.Cleanup(func() { runKubectl(t, viz, "delete", "-f", "-", "--ignore-not-found", "--wait=true", "--timeout=90s") })
	for _, d := range []string{"tap", "metrics-api", "prometheus", "web"} {
		kubectl(t, "", "-n", "linkerd-viz", "rollout", "status", "deploy/"+d, "--timeout=180s")
	}

	ns := fmt.Sprintf("tap-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(tapApp, ns)+"---\n"+fmt.Sprintf(vizExtraApp, ns), "apply", "-f", "-")
	// The user's own Prometheus, scraping from the start; viz uses it later.
	mon := "monitoring-" + ns
	promURL := deployExternalPrometheus(t, mon)
	t.Cleanup(func() {
		tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
		tryKubectl(t, "-n", "linkerd-viz", "delete", "rolebinding", "reach-tap-"+ns, "--ignore-not-found")
	})
	for _, d := range []string{"server", "client", "flaky", "legacy"} {
		kubectl(t, "", "-n", ns, "rollout", "status", "deploy/"+d, "--timeout=120s")
	}
	// A counted client of flaky, checked against the bundled Prometheus
	// after the tap checks.
	awaitScraped(t, ns, "linkerd-viz")
	bundled := startCounter(t, ns, "counter-bundled", 400)
	token := func(sa string) string {
		return strings.TrimSpace(kubectl(t, "", "-n", ns, "create", "token", sa))
	}
	tapper := token("tapper")

	out, err := weft(t, w, "viz", "tap", "deploy/server", "-n", ns, "--token", tapper, "--path", "/tapped", "--max-requests", "3")
	t.Logf("weft viz tap deploy/server:\n%s", out)
	if err != nil {
		t.Fatalf("weft viz tap: %v", err)
	}
	var req, rsp, end int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.HasPrefix(line, "req "):
			req++
			for _, want := range []string{"proxy=in ", "tls=true", ":method=GET", ":authority=server." + ns + ".svc.cluster.local", ":path=/tapped?from=client"} {
				if !strings.Contains(line, want) {
					t.Errorf("req line lacks %q: %s", want, line)
				}
			}
		case strings.HasPrefix(line, "rsp "):
			rsp++
			if !strings.Contains(line, ":status=200") {
				t.Errorf("rsp line without :status=200: %s", line)
			}
		case strings.HasPrefix(line, "end "):
			end++
		}
	}
	if req < 3 || rsp < 3 || end != 3 {
		t.Errorf("got %d req, %d rsp, %d end lines; want 3 requests seen through", req, rsp, end)
	}

	out, err = weft(t, w, "viz", "tap", "deploy/server", "-n", ns, "--token", tapper, "--max-requests", "1", "-o", "wide")
	if err != nil || !strings.Contains(out, "client_id=default."+ns+".serviceaccount.identity.linkerd.cluster.local") {
		t.Errorf("weft viz tap -o wide: %v; want the client's identity:\n%s", err, out)
	}

	out, err = weft(t, w, "viz", "top", "deploy/server", "-n", ns, "--token", tapper, "--duration", "6s")
	t.Logf("weft viz top deploy/server:\n%s", out)
	if err != nil || !regexpMatch(`(?m)^\S+\s+\S+\s+GET\s+/tapped\s+[1-9]\d*\s+\S+\s+\S+\s+\S+\s+100\.00%$`, out) {
		t.Errorf("weft viz top: %v; want a GET /tapped row at 100%%", err)
	}

	out, err = weft(t, w, "viz", "tap", "deploy/server", "-n", ns, "--token", token("nosy"), "--max-requests", "1")
	if err == nil || !strings.Contains(out, "tap denied: system:serviceaccount:"+ns+":nosy cannot watch deployments/tap server") {
		t.Errorf("weft viz tap as nosy: %v; want the tap server's refusal:\n%s", err, out)
	}
	t.Logf("weft viz tap as nosy:\n%s", out)

	checkVizMetrics(t, w, ns)
	bundled.check(t, w, "bundled Prometheus")

	// viz on the user's Prometheus (prometheus.enabled=false, prometheusUrl).
	kubectl(t, "", "-n", mon, "rollout", "status", "deploy/prometheus", "--timeout=60s")
	switchToExternalPrometheus(t, w, promURL)
	awaitScraped(t, ns, mon)
	external := startCounter(t, ns, "counter-external", 400)
	sr := external.check(t, w, "external Prometheus")
	checkVizEdges(t, w, ns)

	// The dashboard in Chromium through weft viz dashboard (flaky under
	// traffic again), then bad input and Prometheus gone.
	startCounter(t, ns, "counter-dashboard", 600)
	dashboard, browser := checkDashboardInBrowser(t, w, ns, sr)
	checkVizBadInput(t, w, ns, tapper, mon, promURL, dashboard, browser)
}

// checkVizMetrics: the metrics API on the bundled Prometheus sees the
// client's 10 requests per second (one every 100 ms) to the server, all
// successful and over mTLS, its edge, and the Service's default route.
func checkVizMetrics(t *testing.T, w, ns string) {
	const wantRPS = 10.0
	var stat struct {
		Rows []struct {
			Name            string   `json:"name"`
			MeshedPods      int      `json:"meshedPods"`
			TotalPods       int      `json:"totalPods"`
			SuccessRate     *float64 `json:"successRate"`
			RPS             *float64 `json:"rps"`
			Requests        float64  `json:"requests"`
			SecuredRequests float64  `json:"securedRequests"`
		} `json:"rows"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := weft(t, w, "viz", "stat", "deploy/server", "-n", ns, "-t", "30s", "-o", "json")
		if err == nil && json.Unmarshal([]byte(out), &stat) == nil && len(stat.Rows) == 1 && stat.Rows[0].RPS != nil &&
			math.Abs(*stat.Rows[0].RPS-wantRPS) <= 0.05*wantRPS {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft viz stat deploy/server: %v; want about %.0f rps within 5 %%:\n%s", err, wantRPS, out)
		}
		time.Sleep(5 * time.Second)
	}
	r := stat.Rows[0]
	t.Logf("viz stat deploy/server: %.2f rps (client: one request every 100 ms), success %.3f, meshed %d/%d", *r.RPS, *r.SuccessRate, r.MeshedPods, r.TotalPods)
	if r.SuccessRate == nil || *r.SuccessRate < 0.999 || r.MeshedPods != 1 || r.TotalPods != 1 || r.SecuredRequests < r.Requests*0.999 {
		t.Errorf("viz stat deploy/server = %+v, want all successful, over mTLS, meshed 1/1", r)
	}
	checkVizEdges(t, w, ns)
	out, err := weft(t, w, "viz", "routes", "svc/server", "-n", ns, "-t", "30s")
	t.Logf("weft viz routes svc/server -n %s:\n%s", ns, out)
	// The client waits 100 ms after each answer: on a loaded machine its
	// pace, and so the rate over 30 s, drops a little below 10 rps.
	if err != nil || !regexpMatch(`(?m)^\[DEFAULT\]\s+server\s+100\.00%\s+(9\.[0-9]|10\.[0-4])rps`, out) {
		t.Errorf("weft viz routes: %v; want the default route of server at about 10 rps", err)
	}
}

// checkVizEdges: weft viz edges shows client → server over mTLS with both
// identities.
func checkVizEdges(t *testing.T, w, ns string) {
	t.Helper()
	out, err := weft(t, w, "viz", "edges", "deploy", "-n", ns, "-o", "wide")
	t.Logf("weft viz edges deploy -n %s -o wide:\n%s", ns, out)
	if err != nil || !regexpMatch(`(?m)^client\s+server\s+`+ns+`\s+`+ns+`\s+default\.`+ns+`\.serviceaccount\.identity\.linkerd\.cluster\.local\s+default\.`+ns+`\.serviceaccount`, out) {
		t.Errorf("weft viz edges: %v; want client → server with both identities", err)
	}
}
