package viz

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

const (
	rate   = 40               // requests per second the client sends
	window = 10 * time.Second // the queries' window
)

// within asserts got is within 5 % of want.
func within(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: no value, want %.3f", what, want)
		return
	}
	if math.Abs(*got-want) > 0.05*want {
		t.Errorf("%s = %.3f, want %.3f ± 5 %%", what, *got, want)
	} else {
		t.Logf("%s = %.3f (client counted %.3f)", what, *got, want)
	}
}

func TestMetricsAPIAgainstPrometheus(t *testing.T) {
	m := newVizMesh(t)
	var kubeAPI string // the metrics API in Kubernetes mode, when Kubernetes binaries are here
	if haveKubeBins() {
		kubeAPI = startKubeMetricsAPI(t, m)
	}
	tr := m.drive(t, rate, 25*time.Second, 4)
	// Let the window fill with steady traffic, then ask while it goes on.
	time.Sleep(window + 5*time.Second)
	at := time.Now()
	total, ok := tr.between(at.Add(-window), at)
	if total < rate*int(window.Seconds())*9/10 {
		t.Fatalf("client sent %d requests in the window, want about %d", total, rate*int(window.Seconds()))
	}
	wantRPS, wantSR := float64(total)/window.Seconds(), float64(ok)/float64(total)
	c := &metricsapi.Client{Base: m.apiURL}
	ctx := context.Background()

	stat := func(r metricsapi.StatRequest) map[string]metricsapi.StatRow {
		t.Helper()
		r.Window = window
		resp, err := c.Stat(ctx, r)
		if err != nil {
			t.Fatalf("stat %+v: %v", r, err)
		}
		rows := map[string]metricsapi.StatRow{}
		for _, row := range resp.Rows {
			rows[row.Name] = row
		}
		return rows
	}

	t.Run("relabeling", func(t *testing.T) { checkRelabeling(t, m) })
	t.Run("deployments", func(t *testing.T) {
		rows := stat(metricsapi.StatRequest{Kind: metricsapi.KindDeployment, Namespace: "shop"})
		api, ok := rows["api"]
		if !ok {
			t.Fatalf("no api row: %+v", rows)
		}
		within(t, "api success rate", api.SuccessRate, wantSR)
		within(t, "api rps", api.RPS, wantRPS)
		if api.MeshedPods != 1 {
			t.Errorf("api meshed pods = %d, want 1", api.MeshedPods)
		}
		if api.SecuredRequests < api.Requests*0.999 {
			t.Errorf("api: %.1f of %.1f requests over mTLS, want all", api.SecuredRequests, api.Requests)
		}
		if api.LatencyP50Ms == nil || *api.LatencyP50Ms < 2 || *api.LatencyP50Ms > 100 {
			t.Errorf("api p50 = %v ms, want between the application's 2 ms and 100 ms", api.LatencyP50Ms)
		}
		if api.LatencyP99Ms == nil || *api.LatencyP99Ms < *api.LatencyP50Ms {
			t.Errorf("api p99 = %v, want ≥ p50", api.LatencyP99Ms)
		}
		if api.TCPConnections == nil || *api.TCPConnections < 1 {
			t.Errorf("api tcp connections = %v, want ≥ 1", api.TCPConnections)
		}
		web, ok := rows["web"]
		if !ok || web.MeshedPods != 1 || web.RPS != nil {
			t.Errorf("web row = %+v, want meshed with no inbound traffic", web)
		}
	})
	t.Run("routes", func(t *testing.T) { skipWithoutKube(t, kubeAPI); checkRoutes(t, m, tr, at) })
	t.Run("kubernetes", func(t *testing.T) { skipWithoutKube(t, kubeAPI); checkKubeMode(t, m, kubeAPI, wantRPS) })
	t.Run("http service discovery", func(t *testing.T) { skipWithoutKube(t, kubeAPI); checkHTTPSD(t, m, kubeAPI) })
	t.Run("to", func(t *testing.T) {
		rows := stat(metricsapi.StatRequest{Kind: metricsapi.KindDeployment, Namespace: "shop", Name: "web", ToKind: "deployment", ToName: "api"})
		within(t, "web → api rps", rows["web"].RPS, wantRPS)
		within(t, "web → api success rate", rows["web"].SuccessRate, wantSR)
	})
	t.Run("from", func(t *testing.T) {
		rows := stat(metricsapi.StatRequest{Kind: metricsapi.KindDeployment, Namespace: "shop", FromKind: "deployment", FromName: "web"})
		if len(rows) != 1 {
			t.Fatalf("rows from web = %+v, want api only", rows)
		}
		within(t, "api from web rps", rows["api"].RPS, wantRPS)
	})
	t.Run("services", func(t *testing.T) {
		rows := stat(metricsapi.StatRequest{Kind: metricsapi.KindService, Namespace: "shop"})
		within(t, "svc/api rps", rows["api"].RPS, wantRPS)
		within(t, "svc/api success rate", rows["api"].SuccessRate, wantSR)
	})
	t.Run("pods and namespaces", func(t *testing.T) {
		within(t, "pod api-0 rps", stat(metricsapi.StatRequest{Kind: metricsapi.KindPod, Namespace: "shop", Name: "api-0"})["api-0"].RPS, wantRPS)
		ns := stat(metricsapi.StatRequest{Kind: metricsapi.KindNamespace, Name: "shop"})["shop"]
		within(t, "ns shop rps", ns.RPS, wantRPS)
		if ns.MeshedPods != 2 {
			t.Errorf("ns shop meshed pods = %d, want 2", ns.MeshedPods)
		}
	})
	t.Run("edges", func(t *testing.T) {
		resp, err := c.Edges(ctx, metricsapi.EdgeRequest{Kind: metricsapi.KindDeployment, Namespace: "shop", Window: window})
		if err != nil {
			t.Fatal(err)
		}
		want := metricsapi.Edge{
			Src:      metricsapi.Endpoint{Namespace: "shop", Kind: metricsapi.KindDeployment, Name: "web"},
			Dst:      metricsapi.Endpoint{Namespace: "shop", Kind: metricsapi.KindDeployment, Name: "api"},
			ClientID: webID, ServerID: apiID, Secured: true,
		}
		if len(resp.Edges) != 1 || resp.Edges[0] != want {
			t.Errorf("edges = %+v, want [%+v]", resp.Edges, want)
		}
	})
	t.Run("cli", func(t *testing.T) { checkCLI(t, m, wantRPS, wantSR) })
	t.Run("grafana panels", func(t *testing.T) { checkGrafanaPanels(t, m) })
	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, m, wantSR) })
	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			path, code, msg string
			status          int
		}{
			{"/api/v1/stat?kind=gadget&namespace=shop", "unknown-kind", `unknown resource type "gadget": must be one of namespace, deployment, statefulset, daemonset, job, pod, service (or their short names: ns, deploy, sts, ds, po, svc)`, 400},
			{"/api/v1/stat?kind=deploy&namespace=shop&name=nope", "not-meshed", `deployment/nope in namespace "shop" is not meshed: Prometheus has no metrics from a proxy of it (it does not exist, has no meshed pods, or its proxies are not scraped)`, 404},
			{"/api/v1/stat?kind=deploy", "bad-request", "a namespace is needed for deployment (or all namespaces)", 400},
			{"/api/v1/stat?kind=deploy&namespace=shop&window=forever", "bad-request", `window "forever": want a duration between 1s and 24h, such as 30s or 1m`, 400},
			{"/api/v1/edges?kind=svc&namespace=shop", "bad-request", "edges are between workloads: services have no proxy of their own", 400},
		} {
			resp, err := http.Get(m.apiURL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			var eb metricsapi.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != tc.status || eb.Error.Code != tc.code || eb.Error.Message != tc.msg {
				t.Errorf("%s: %d %+v, want %d %s %q", tc.path, resp.StatusCode, eb.Error, tc.status, tc.code, tc.msg)
			}
		}
	})
	t.Run("prometheus unreachable", func(t *testing.T) {
		a := proctest.StartListening(t, "metrics-api-dead-prometheus", nil, m.bin+"/weft-controller", "metrics-api", "--no-kube",
			"--prometheus-url", "http://"+deadAddr(t), "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		waitReady(t, "http://"+a["metrics-api admin server"]+"/ready")
		_, err := (&metricsapi.Client{Base: "http://" + a["metrics-api server"]}).Stat(ctx, metricsapi.StatRequest{Kind: metricsapi.KindDeployment, Namespace: "shop"})
		var ae *metricsapi.APIError
		if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "prometheus-unavailable" {
			t.Fatalf("err = %v, want 503 prometheus-unavailable", err)
		}
		t.Logf("message: %s", ae.Message)
	})
	// Last: it waits for scrapes, and the subtests above query the
	// client's traffic while it flows.
	t.Run("authz", func(t *testing.T) { checkAuthz(t, m) })
}

// checkRelabeling checks the chart's relabel_configs
// (the seeds' PodMonitor) on a real Prometheus: only the linkerd-proxy
// container's linkerd-admin port of this control plane's pods is scraped,
// and its series carry namespace, pod, the workload and the pod's labels.
func checkRelabeling(t *testing.T, m *vizMesh) {
	type targetsAnswer struct {
		Data struct {
			ActiveTargets []struct {
				Labels     map[string]string `json:"labels"`
				Health     string            `json:"health"`
				ScrapePool string            `json:"scrapePool"`
			} `json:"activeTargets"`
			DroppedTargets []struct {
				DiscoveredLabels map[string]string `json:"discoveredLabels"`
			} `json:"droppedTargets"`
		} `json:"data"`
	}
	var targets targetsAnswer
	deadline := time.Now().Add(20 * time.Second)
	for {
		targets = targetsAnswer{} // decoding into old maps would merge them
		resp, err := http.Get(m.promURL + "/api/v1/targets?state=any")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&targets)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		healthy := 0
		for _, a := range targets.Data.ActiveTargets {
			if a.Health == "up" {
				healthy++
			}
		}
		if healthy == 2+len(m.controllers)-2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := map[string]map[string]string{}
	controllers := map[string]map[string]string{}
	for _, a := range targets.Data.ActiveTargets {
		if a.Health != "up" {
			t.Errorf("target %v is %s", a.Labels, a.Health)
		}
		if a.ScrapePool == "linkerd-controller" {
			controllers[a.Labels["component"]] = a.Labels
			continue
		}
		got[a.Labels["pod"]] = a.Labels
	}
	// The controllers' job keeps the admin-http ports of the control plane's
	// and viz's namespaces, labelled by component.
	for _, c := range m.controllers {
		if c.port != "admin-http" || (c.ns != "linkerd" && c.ns != "linkerd-viz") {
			continue
		}
		want := map[string]string{"instance": c.addr, "job": "linkerd-controller", "namespace": c.ns, "pod": c.pod, "component": c.container}
		if !equalMaps(controllers[c.container], want) {
			t.Errorf("controller target %s labels = %v, want %v", c.container, controllers[c.container], want)
		}
		delete(controllers, c.container)
	}
	if len(controllers) > 0 {
		t.Errorf("unexpected controller targets %v", controllers)
	}
	want := map[string]map[string]string{
		"web-0": {"instance": m.webAdmin, "job": "linkerd-proxy", "namespace": "shop", "pod": "web-0", "deployment": "web",
			"app": "web", "control_plane_ns": "linkerd", "pod_template_hash": "5d9f"},
		"api-0": {"instance": m.apiAdmin, "job": "linkerd-proxy", "namespace": "shop", "pod": "api-0", "deployment": "api",
			"app": "api", "control_plane_ns": "linkerd"},
	}
	if len(got) != len(want) {
		t.Errorf("active targets = %v, want web-0 and api-0", got)
	}
	for pod, w := range want {
		if !equalMaps(got[pod], w) {
			t.Errorf("target %s labels = %v, want %v", pod, got[pod], w)
		}
	}
	if n := len(targets.Data.DroppedTargets); n != 4 {
		t.Errorf("%d dropped targets, want 4 (the app container's port, another control plane's proxy; a controller's grpc port, an admin-http port outside the control plane)", n)
	}
	// The series themselves carry the labels the metrics API groups by.
	q, err := metricsapi.NewPromQuerier(m.promURL)
	if err != nil {
		t.Fatal(err)
	}
	v, err := q.Query(context.Background(), `proxy_build_info{job="linkerd-proxy", namespace="shop", deployment="api", pod="api-0"}`, time.Now())
	if err != nil || len(v) != 1 {
		t.Errorf("proxy_build_info of api-0: %v, %v; want one series", v, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// promTargets returns Prometheus's active targets by pod (their labels and
// "health") and the number of dropped ones.
func promTargets(t *testing.T, promURL string) (map[string]map[string]string, int) {
	t.Helper()
	var answer struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
			DroppedTargets []json.RawMessage `json:"droppedTargets"`
		} `json:"data"`
	}
	resp, err := http.Get(promURL + "/api/v1/targets?state=any")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, a := range answer.Data.ActiveTargets {
		a.Labels["health"] = a.Health
		out[a.Labels["pod"]] = a.Labels
	}
	return out, len(answer.Data.DroppedTargets)
}
