//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// vizExtraApp joins TestVizTap's app: flaky answers 500 to every 5th
// request (a success rate to measure), legacy is not meshed.
var vizExtraApp = yamlDocs(
	testApp{Name: "flaky", Container: "flaky", Args: `"-http", "0.0.0.0:8080", "-fail-every", "5"`}.yaml(),
	testService{Name: "flaky"}.yaml(),
	testApp{Name: "legacy", Container: "legacy", Annotations: "linkerd.io/inject: disabled"}.yaml())

// counterJob sends N GETs to flaky, one every 100 ms, and prints how many
// got each status and how long it took (the suite's client image: testapp
// built from this tree).
const counterJob = `apiVersion: batch/v1
kind: Job
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {config.linkerd.io/proxy-enable-native-sidecar: enabled}
    spec:
      restartPolicy: Never
      containers:
      - name: client
        image: %[4]s
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://flaky.%[1]s.svc.cluster.local/counted", "-n", "%[3]d", "-interval", "100ms", "-tally"]
`

// externalPrometheus is the user's own Prometheus in its own namespace
// (not meshed): Weft's weft-prometheus image with the job docs/viz.md
// gives users, the chart's proxy-relabel-configs.yaml. Debian's
// Prometheus has no Kubernetes discovery, so the pods come from the
// metrics API's HTTP service discovery, which carries the same
// __meta_kubernetes_* labels.
// scrapeInterval is both Prometheuses' in TestVizTap (the bundled one's
// prometheus.scrapeInterval, the external one's global scrape_interval).
const scrapeInterval = 2 * time.Second

const externalPrometheus = `apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: prometheus, namespace: %[1]s}
data:
  prometheus.yml: |
    global: {scrape_interval: 2s, scrape_timeout: 2s, evaluation_interval: 2s}
    scrape_configs:
    - job_name: linkerd-proxy
      http_sd_configs:
      - {url: "http://metrics-api.linkerd-viz.svc.cluster.local:8085/api/v1/prometheus-sd", refresh_interval: 5s}
      relabel_configs:
%[3]s
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: prometheus, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: prometheus}}
  template:
    metadata: {labels: {app: prometheus}}
    spec:
      containers:
      - name: prometheus
        image: %[2]s
        imagePullPolicy: IfNotPresent
        args: [--config.file=/etc/prometheus/prometheus.yml, --storage.tsdb.path=/data, --web.listen-address=:9090]
        ports: [{containerPort: 9090}]
        readinessProbe: {httpGet: {path: /-/ready, port: 9090}}
        volumeMounts:
        - {name: config, mountPath: /etc/prometheus}
        - {name: data, mountPath: /data}
      volumes:
      - {name: config, configMap: {name: prometheus}}
      - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: prometheus, namespace: %[1]s}
spec:
  selector: {app: prometheus}
  ports: [{port: 9090, targetPort: 9090}]
`

// deployExternalPrometheus starts the user's Prometheus in namespace mon
// and returns its URL.
func deployExternalPrometheus(t *testing.T, mon string) string {
	t.Helper()
	b, err := os.ReadFile("../../charts/weft-viz/files/proxy-relabel-configs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules := strings.ReplaceAll(string(b), "{{ .controlPlaneNamespace }}", "linkerd")
	image := "ghcr.io/weftmesh/weft-prometheus:" + imageVersion(t)
	kubectl(t, fmt.Sprintf(externalPrometheus, mon, image, indent(rules, "      ")), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", mon, "--ignore-not-found", "--wait=false") })
	return "http://prometheus." + mon + ".svc.cluster.local:9090"
}

// counted is a counterJob's run.
type counted struct {
	ns, job string
	started time.Time // the client container's start
}

// awaitScraped waits until the Prometheus behind Service prometheus:9090
// in promNS scrapes flaky's proxy: the bundled one finds pods through the
// metrics API's discovery every 30 s, and increase() cannot count what a
// series held at its first scrape, so the counter must not start before.
func awaitScraped(t *testing.T, ns, promNS string) {
	t.Helper()
	q := url.QueryEscape(`up{job="linkerd-proxy",namespace="` + ns + `",deployment="flaky"} == 1`)
	path := "/api/v1/namespaces/" + promNS + "/services/prometheus:9090/proxy/api/v1/query?query=" + q
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		out, _ := runKubectl(t, "", "get", "--raw", path)
		if strings.Contains(out, `"deployment":"flaky"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus in %s does not scrape flaky's proxy within 60s: %s", promNS, out)
		}
	}
}

func startCounter(t *testing.T, ns, job string, n int) counted {
	t.Helper()
	kubectl(t, fmt.Sprintf(counterJob, ns, job, n, clientImage), "apply", "-f", "-")
	kubectl(t, "", "-n", ns, "wait", "pod", "-l", "job-name="+job, "--for=condition=Ready", "--timeout=90s")
	at := kubectl(t, "", "-n", ns, "get", "pod", "-l", "job-name="+job, "-o",
		`jsonpath={.items[0].status.containerStatuses[?(@.name=="client")].state.running.startedAt}`)
	started, err := time.Parse(time.RFC3339, strings.TrimSpace(at))
	if err != nil {
		t.Fatalf("client start %q: %v", at, err)
	}
	return counted{ns: ns, job: job, started: started}
}

// check compares weft viz stat deploy/flaky with what the counter
// counted, over one window holding the whole run (from 10 s before the
// client started to after its last answer was scraped): the success rate
// and the rps (the requests in the window over its length; the client's
// requests over the same length) within 5 %. On the shared 2-core machine
// the client falls behind its 100 ms pace and catches up in bursts, so a
// window inside the run would not see the client's average rate. It
// returns the counted success rate.
func (c counted) check(t *testing.T, w, mode string) float64 {
	t.Helper()
	if err := tryKubectl(t, "-n", c.ns, "wait", "job/"+c.job, "--for=condition=Complete", "--timeout=120s"); err != nil {
		t.Fatalf("%s: counter did not complete: %v", mode, err)
	}
	logs := kubectl(t, "", "-n", c.ns, "logs", "job/"+c.job, "-c", "client")
	var ok, total int
	var seconds float64
	for _, line := range strings.Split(logs, "\n") {
		var code, n int
		if _, err := fmt.Sscanf(line, "status=%d count=%d", &code, &n); err == nil {
			total += n
			if code == http.StatusOK {
				ok += n
			}
		}
		fmt.Sscanf(line, "seconds=%g", &seconds)
	}
	if total == 0 || seconds == 0 {
		t.Fatalf("%s: counter's tally unreadable:\n%s", mode, logs)
	}
	time.Sleep(6 * time.Second) // the last answers scraped (every 2 s)
	window := time.Since(c.started.Add(-10 * time.Second)).Round(time.Second)
	win := fmt.Sprintf("%ds", int(window.Seconds()))
	out, err := weft(t, w, "viz", "stat", "deploy/flaky", "-n", c.ns, "-t", win, "-o", "json")
	if err != nil {
		t.Fatalf("%s: weft viz stat deploy/flaky: %v\n%s", mode, err, out)
	}
	var stat struct {
		Rows []struct {
			MeshedPods  int      `json:"meshedPods"`
			TotalPods   int      `json:"totalPods"`
			SuccessRate *float64 `json:"successRate"`
			RPS         *float64 `json:"rps"`
			Requests    float64  `json:"requests"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &stat); err != nil || len(stat.Rows) != 1 || stat.Rows[0].RPS == nil || stat.Rows[0].SuccessRate == nil {
		t.Fatalf("%s: weft viz stat deploy/flaky -o json: %v\n%s", mode, err, out)
	}
	table, _ := weft(t, w, "viz", "stat", "deploy", "-n", c.ns, "-t", win)
	t.Logf("%s: weft viz stat deploy -n %s -t %s:\n%s", mode, c.ns, win, table)

	wantSR, wantRPS := float64(ok)/float64(total), float64(total)/window.Seconds()
	r := stat.Rows[0]
	t.Logf("%s: viz stat deploy/flaky -t %s: success %.4f, %.3f rps (%.1f requests), meshed %d/%d; the client counted %d/%d answers 200 (%.2f s at its own pace): success %.4f, %.3f rps over the window",
		mode, win, *r.SuccessRate, *r.RPS, r.Requests, r.MeshedPods, r.TotalPods, ok, total, seconds, wantSR, wantRPS)
	if math.Abs(*r.SuccessRate-wantSR) > 0.05*wantSR {
		t.Errorf("%s: success rate %.4f, the client's %.4f: more than 5 %% apart", mode, *r.SuccessRate, wantSR)
	}
	// Prometheus's rate() scales the increase it saw between the window's
	// first and last samples up to the whole window: with a sample every
	// 2 s that reads up to window/(window-4s) high. Within 5 % below, and
	// 5 % above that.
	lo, hi := 0.95*wantRPS, 1.05*wantRPS*window.Seconds()/(window.Seconds()-2*scrapeInterval.Seconds())
	if *r.RPS < lo || *r.RPS > hi {
		t.Errorf("%s: %.3f rps, the client's %.3f: outside %.3f–%.3f (5 %%, and above it rate()'s extrapolation)", mode, *r.RPS, wantRPS, lo, hi)
	}
	if r.MeshedPods != 1 || r.TotalPods != 1 {
		t.Errorf("%s: meshed %d/%d, want 1/1", mode, r.MeshedPods, r.TotalPods)
	}
	return wantSR
}

// switchToExternalPrometheus reinstalls viz with prometheus.enabled=false
// and prometheusUrl, removes the bundled Prometheus and waits for the
// metrics API to restart on the new URL.
func switchToExternalPrometheus(t *testing.T, w, url string) {
	t.Helper()
	viz, err := weft(t, w, "viz", "install", "--set", "prometheus.enabled=false", "--set", "prometheusUrl="+url, "--set", "grafana.dashboards=false")
	if err != nil {
		t.Fatalf("weft viz install (external Prometheus): %v\n%s", err, viz)
	}
	if strings.Contains(viz, "name: prometheus\n") {
		t.Fatalf("with prometheus.enabled=false the chart still renders a Prometheus")
	}
	kubectl(t, viz, "apply", "-f", "-")
	kubectl(t, "", "-n", "linkerd-viz", "delete", "deploy/prometheus", "svc/prometheus", "configmap/prometheus-config", "--ignore-not-found", "--wait=true")
	kubectl(t, "", "-n", "linkerd-viz", "rollout", "status", "deploy/metrics-api", "--timeout=120s")
	args := kubectl(t, "", "-n", "linkerd-viz", "get", "deploy/metrics-api", "-o", "jsonpath={.spec.template.spec.containers[0].args}")
	if !strings.Contains(args, url) {
		t.Fatalf("metrics-api's args %s do not name %s", args, url)
	}
}

// startDashboard runs weft viz dashboard (a port-forward to the web pod)
// and returns the URL it prints.
func startDashboard(t *testing.T, w string) string {
	t.Helper()
	cmd := exec.Command(w, "viz", "dashboard", "--show", "url", "--port", "0", "--wait", "60s")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			t.Logf("weft viz dashboard: %s", line)
			if !sent && strings.HasPrefix(line, "http://") {
				urls <- line
				sent = true
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(90 * time.Second):
		t.Fatal("weft viz dashboard printed no URL within 90s")
	}
	return ""
}

func vizArtefactDir(t *testing.T) string {
	if d := os.Getenv("WEFT_VIZ_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func vizScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(vizArtefactDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func chromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not installed (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, chromedp.WindowSize(1400, 800), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(bctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// checkDashboardInBrowser: weft viz dashboard's port-forward, headless
// Chromium: the namespace page lists the meshed workloads with their
// success rates (flaky's within 5 % of wantFlakySR), the workload page's
// live tap shows the client's requests, and a foreign Host gets 403.
func checkDashboardInBrowser(t *testing.T, w, ns string, wantFlakySR float64) (base string, browser context.Context) {
	t.Helper()
	base = startDashboard(t, w)

	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "evil.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("foreign Host through the port-forward: %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("Host evil.example.com: %d, want 403", resp.StatusCode)
	}

	ctx := chromium(t)
	row := func(name string) string { return `table[data-kind="deployment"] tr[data-name="` + name + `"]` }
	var srFlaky, srServer, namespaces string
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`table[data-kind="namespace"] tr[data-name="`+ns+`"]`),
	)
	if err == nil {
		namespaces, err = chromedp.Run(ctx, chromedp.Text(`table[data-kind="namespace"] tr[data-name="`+ns+`"]`))
		t.Logf("namespaces page, row %s: %q", ns, namespaces)
		vizScreenshot(t, ctx, "e2e-dashboard-namespaces.png")
	}
	if err == nil {
		err = chromedp.Do(ctx,
			chromedp.Click(`tr[data-name="`+ns+`"] a`),
			chromedp.WaitVisible(row("flaky")+` td.sr span:not(.muted)`),
			chromedp.WaitVisible(row("server")+` td.sr span:not(.muted)`),
			chromedp.WaitVisible(`table[data-kind="edges"]`),
		)
	}
	if err == nil {
		srFlaky, err = chromedp.Run(ctx, chromedp.Text(row("flaky")+` td.sr`))
	}
	if err == nil {
		srServer, err = chromedp.Run(ctx, chromedp.Text(row("server")+` td.sr`))
	}
	if err != nil {
		vizScreenshot(t, ctx, "e2e-dashboard-failed.png")
		t.Fatalf("dashboard namespace page: %v", err)
	}
	vizScreenshot(t, ctx, "e2e-dashboard-namespace.png")
	var got float64
	if _, err := fmt.Sscanf(strings.TrimSpace(srFlaky), "%g%%", &got); err != nil {
		t.Fatalf("flaky's success rate cell %q: %v", srFlaky, err)
	}
	t.Logf("dashboard: flaky %s (the client's %.2f%%), server %s", srFlaky, 100*wantFlakySR, srServer)
	if math.Abs(got/100-wantFlakySR) > 0.05*wantFlakySR {
		t.Errorf("dashboard: flaky's success rate %s, want %.2f%% within 5 %%", srFlaky, 100*wantFlakySR)
	}
	if strings.TrimSpace(srServer) != "100.00%" {
		t.Errorf("dashboard: server's success rate %q, want 100.00%%", srServer)
	}

	// The workload page's live tap: the client's requests appear as rows.
	var first string
	err = chromedp.Do(ctx,
		chromedp.Click(row("server")+` a.taplink`),
		chromedp.WaitVisible(`#taprows tr`),
		chromedp.Sleep(1500*time.Millisecond),
	)
	if err == nil {
		first, err = chromedp.Run(ctx, chromedp.Text(`#taprows tr`))
	}
	if err != nil {
		vizScreenshot(t, ctx, "e2e-dashboard-tap-failed.png")
		t.Fatalf("dashboard live tap: %v", err)
	}
	vizScreenshot(t, ctx, "e2e-dashboard-tap.png")
	t.Logf("dashboard live tap, newest row: %q", first)
	for _, want := range []string{"GET", "server." + ns + ".svc.cluster.local", "/tapped?from=client", "200"} {
		if !strings.Contains(first, want) {
			t.Errorf("live tap row %q lacks %q", first, want)
		}
	}
	return base, ctx
}

// checkVizBadInput: the CLI's answers to an unknown kind, an unmeshed
// workload and (after the user's Prometheus is gone) an unreachable
// Prometheus are clear and non-zero, and the dashboard shows the
// degraded state.
func checkVizBadInput(t *testing.T, w, ns, tapToken, mon, promURL, dashboard string, browser context.Context) {
	t.Helper()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"viz", "stat", "widgets", "-n", ns}, `unknown resource type "widgets"`},
		{[]string{"viz", "stat", "deploy/legacy", "-n", ns}, `deployment/legacy in namespace "` + ns + `" is not meshed`},
		{[]string{"viz", "stat", "deploy/nope", "-n", ns}, "not found"},
		{[]string{"viz", "tap", "deploy/legacy", "-n", ns, "--token", tapToken, "--max-requests", "1"}, `deployment legacy in namespace "` + ns + `" has no running meshed pods to tap (1 running)`},
		{[]string{"viz", "tap", "widgets/x", "-n", ns, "--token", tapToken}, `unknown resource type "widgets"`},
	} {
		out, err := weft(t, w, tc.args...)
		cmd := strings.ReplaceAll(strings.Join(tc.args, " "), tapToken, "<token>")
		t.Logf("weft %s: %v\n%s", cmd, err, strings.TrimSpace(out))
		if err == nil {
			t.Errorf("weft %s exited 0", cmd)
		}
		if !strings.Contains(out, tc.want) {
			t.Errorf("weft %s: %q lacks %q", cmd, out, tc.want)
		}
	}

	// The user's Prometheus goes away.
	kubectl(t, "", "-n", mon, "scale", "deploy/prometheus", "--replicas=0")
	kubectl(t, "", "-n", mon, "wait", "pod", "-l", "app=prometheus", "--for=delete", "--timeout=60s")
	out, err := weft(t, w, "viz", "stat", "deploy", "-n", ns)
	t.Logf("weft viz stat deploy (Prometheus gone): %v\n%s", err, strings.TrimSpace(out))
	if err == nil || !strings.Contains(out, "Prometheus at "+promURL+" cannot be queried") {
		t.Errorf("weft viz stat with Prometheus gone: %v; want non-zero naming Prometheus at %s:\n%s", err, promURL, out)
	}
	var banner string
	// A same-document navigation (the hash): the page's own router renders
	// the namespace again.
	err = chromedp.Do(browser, chromedp.Evaluate[chromedp.Void](`location.hash = "#/namespaces/`+ns+`"`), chromedp.WaitVisible(`#error`))
	if err == nil {
		banner, err = chromedp.Run(browser, chromedp.Text(`#error`))
	}
	if err != nil {
		t.Fatalf("degraded dashboard: %v", err)
	}
	vizScreenshot(t, browser, "e2e-dashboard-prometheus-gone.png")
	t.Logf("dashboard banner: %q", banner)
	if !strings.Contains(banner, "Metrics are unavailable") || !strings.Contains(banner, "Prometheus at "+promURL) {
		t.Errorf("dashboard banner %q, want it to name Prometheus at %s", banner, promURL)
	}
}
