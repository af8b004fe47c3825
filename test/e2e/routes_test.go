//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two versions of a service, as seed 003 deploys them: the Service
// `server` selects v1 (the stable one), `server-v2` the canary.
var versionedApp = yamlDocs(meshedNamespace,
	testApp{Name: "server-v1", Replicas: 1, Labels: "app: server, version: v1"}.yaml(),
	testApp{Name: "server-v2", Replicas: 1, Labels: "app: server, version: v2"}.yaml(),
	testService{Name: "server", Selector: "app: server, version: v1"}.yaml(),
	testService{Name: "server-v2", Selector: "app: server, version: v2"}.yaml())

// Servers that misbehave: every 10th answer a 500, or every answer after
// a second; Services annotated with Linkerd's retry and timeout annotations.
var annotatedApp = yamlDocs(
	testApp{Name: "flaky", Replicas: 1, Args: `"-http", "0.0.0.0:8080", "-fail-every", "10"`}.yaml(),
	testApp{Name: "slow", Replicas: 1, Args: `"-http", "0.0.0.0:8080", "-delay", "2s"`}.yaml(),
	testService{Name: "flaky", Annotations: `retry.linkerd.io/http: "5xx", retry.linkerd.io/limit: "2"`}.yaml(),
	testService{Name: "slow", Annotations: "timeout.linkerd.io/request: 300ms"}.yaml())

// A server answering 500 to its first 5 requests behind a Service with
// Linkerd's consecutive failure accrual (3 failures eject; penalties 1 s,
// then doubled; no jitter).
var accrualApp = yamlDocs(
	testApp{Name: "breaker", Replicas: 1, Args: `"-http", "0.0.0.0:8080", "-fail-first", "5"`}.yaml(),
	testService{Name: "breaker", Annotations: `balancer.linkerd.io/failure-accrual: consecutive, balancer.linkerd.io/failure-accrual-consecutive-max-failures: "3", balancer.linkerd.io/failure-accrual-consecutive-min-penalty: 1s, balancer.linkerd.io/failure-accrual-consecutive-max-penalty: 10s, balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio: "0"`}.yaml())

// The seed's HTTPRoute, with the weights given.
const splitRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: server-split, namespace: %[1]s}
spec:
  parentRefs:
    - name: server
      group: core
      kind: Service
      namespace: %[1]s
      port: 80
  rules:
  - backendRefs:
    - name: server
      port: 80
      weight: %[2]d
    - name: server-v2
      port: 80
      weight: %[3]d
`

// A meshed client Job: GETs http://server/ n times, every interval, each
// answer printed after the time it was sent; any failure fails the Job.
const routeClient = `apiVersion: batch/v1
kind: Job
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {config.linkerd.io/proxy-enable-native-sidecar: enabled}
    spec:
      serviceAccountName: client
      restartPolicy: Never
      containers:
      - name: client
        image: %[3]s
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://%[7]s/", "-n", "%[4]d", "-interval", "%[5]s", "-stamp"%[6]s]
`

// The seed's A/B route: Firefox users with en-US split 10/90, the others
// on the stable Service.
const abRoute = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: server-split, namespace: %[1]s}
spec:
  parentRefs:
    - name: server
      group: core
      kind: Service
      namespace: %[1]s
      port: 80
  rules:
    - matches:
      - headers:
        - name: "User-Agent"
          type: RegularExpression
          value: ".*Firefox.*"
        - name: Accept-Language
          type: RegularExpression
          value: "en-US.*"
      backendRefs:
        - name: server
          port: 80
          weight: 10
        - name: server-v2
          port: 80
          weight: 90
    - backendRefs:
        - name: server
          port: 80
`

// The seed's shadow deployment: the stable Service serves (its weight 0
// notwithstanding, docs/traffic.md), v2 gets copies.
const mirrorRoute = `apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: server-split, namespace: %[1]s}
spec:
  parentRefs:
    - name: server
      group: core
      kind: Service
      namespace: %[1]s
      port: 80
  rules:
  - backendRefs:
    - name: server
      port: 80
      weight: 0
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: server-v2
          port: 80
`

type answer struct {
	sent    time.Time
	version string // v1 or v2
}

// answers reads a client Job's log.
func answers(t *testing.T, ns, job string) []answer {
	t.Helper()
	var out []answer
	for _, line := range strings.Split(strings.TrimSpace(kubectl(t, "", "-n", ns, "logs", "job/"+job, "-c", "client")), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "t=") {
			continue
		}
		ns, err := strconv.ParseInt(strings.TrimPrefix(f[0], "t="), 10, 64)
		if err != nil {
			continue
		}
		a := answer{sent: time.Unix(0, ns)}
		switch {
		case strings.HasPrefix(f[1], "host=server-v1-"):
			a.version = "v1"
		case strings.HasPrefix(f[1], "host=server-v2-"):
			a.version = "v2"
		}
		out = append(out, a)
	}
	return out
}

func runClient(t *testing.T, ns, job string, n int, interval string, headers ...string) {
	t.Helper()
	runClientTo(t, ns, job, "server", n, interval, headers...)
}

func runClientTo(t *testing.T, ns, job, host string, n int, interval string, headers ...string) {
	t.Helper()
	extra := ""
	for _, h := range headers {
		extra += fmt.Sprintf(", \"-header\", %q", h)
	}
	kubectl(t, fmt.Sprintf(routeClient, ns, job, clientImage, n, interval, extra, host), "apply", "-f", "-")
	awaitStarted(t, ns, job)
}

// awaitStarted waits until the Job's pod is Ready or has already finished:
// a short client (200 requests, no pause) can run and exit between two of
// the kubelet's status updates, so its pod is never seen Ready. A failed
// pod counts as started too; awaitClient reports it.
func awaitStarted(t *testing.T, ns, job string) {
	t.Helper()
	var out string
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out = tryOutput(t, "-n", ns, "get", "pod", "-l", "job-name="+job, "-o",
			`jsonpath={range .items[*]}{.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		for _, line := range strings.Split(out, "\n") {
			switch f := strings.Fields(line); {
			case len(f) == 2 && f[0] == "Running" && f[1] == "True",
				len(f) >= 1 && (f[0] == "Succeeded" || f[0] == "Failed"):
				return
			}
		}
	}
	t.Fatalf("client %s neither Ready nor finished in 90 s (phase, Ready: %q)\n%s", job, out,
		tryOutput(t, "-n", ns, "describe", "pod", "-l", "job-name="+job))
}

func awaitClient(t *testing.T, ns, job string) {
	t.Helper()
	if err := tryKubectl(t, "-n", ns, "wait", "job/"+job, "--for=condition=Complete", "--timeout=300s"); err != nil {
		t.Fatalf("client %s did not complete (a request failed?): %v\n%s", job, err,
			tryOutput(t, "-n", ns, "logs", "job/"+job, "-c", "client", "--tail", "20"))
	}
}

// awaitAccepted waits until the policy controller accepted the route's
// current generation.
func awaitAccepted(t *testing.T, ns string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out := tryOutput(t, "-n", ns, "get", "httproute", "server-split", "-o",
			`jsonpath={.metadata.generation} {.status.parents[0].conditions[?(@.type=="Accepted")].status} {.status.parents[0].conditions[?(@.type=="Accepted")].observedGeneration}`)
		if f := strings.Fields(out); len(f) == 3 && f[1] == "True" && f[0] == f[2] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("route not accepted in 60 s: generation, Accepted, observedGeneration = %q\nthe route:\n%s\npolicy controller (route lines):\n%s", out,
				tryOutput(t, "-n", ns, "get", "httproute", "server-split", "-o", "yaml"),
				grepLines(tryOutput(t, "-n", "linkerd", "logs", "deploy/linkerd-destination", "-c", "policy", "--tail", "400"), "route"))
		}
	}
}

// TestRoutes: seed 003's canary (90/10 over 2,000 requests, within ±3
// points) and blue-green switch (applied under steady traffic: no request
// fails, and every request sent a second after the switch reaches v2),
// through the policy controller and the client's proxy.
func TestRoutes(t *testing.T) {
	installControlPlane(t)
	if tryKubectl(t, "get", "crd", "servers.policy.linkerd.io") != nil {
		crdArgs := []string{"install", "weft-crds", "../../charts/weft-crds", "-n", "linkerd"}
		if tryKubectl(t, "get", "crd", "httproutes.gateway.networking.k8s.io") == nil {
			crdArgs = append(crdArgs, "--set", "installGatewayAPI=false")
		}
		helm(t, crdArgs...)
		t.Cleanup(func() { helm(t, "uninstall", "weft-crds", "-n", "linkerd", "--ignore-not-found", "--wait") })
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- policy logs:\n%s", tryOutput(t, "-n", "linkerd", "logs", "deploy/linkerd-destination", "-c", "policy", "--tail", "40"))
		}
	})
	ns := fmt.Sprintf("routes-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(versionedApp, ns), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	for _, d := range []string{"server-v1", "server-v2"} {
		kubectl(t, "", "-n", ns, "rollout", "status", "deploy/"+d, "--timeout=120s")
	}

	// Canary: 90/10.
	kubectl(t, fmt.Sprintf(splitRoute, ns, 90, 10), "apply", "-f", "-")
	awaitAccepted(t, ns)
	const n = 2000
	runClient(t, ns, "canary", n, "0s")
	awaitClient(t, ns, "canary")
	got := map[string]int{}
	for _, a := range answers(t, ns, "canary") {
		got[a.version]++
	}
	if got["v1"]+got["v2"] != n {
		t.Fatalf("answers %v, want %d from v1 and v2", got, n)
	}
	share := 100 * float64(got["v2"]) / n
	t.Logf("canary share over %d requests: %.1f %% (%v)", n, share, got)
	if share < 7 || share > 13 {
		t.Errorf("v2 got %.1f %% of the requests, want 10 ± 3", share)
	}

	// Blue-green: all on v1, then the seed's 0/1 switch while ~100
	// requests a second flow.
	kubectl(t, fmt.Sprintf(splitRoute, ns, 1, 0), "apply", "-f", "-")
	awaitAccepted(t, ns)
	time.Sleep(2 * time.Second)
	runClient(t, ns, "bluegreen", 1000, "10ms")
	time.Sleep(3 * time.Second)
	kubectl(t, fmt.Sprintf(splitRoute, ns, 0, 1), "apply", "-f", "-")
	switched := time.Now()
	awaitClient(t, ns, "bluegreen")
	var before, after, late, lateV1 int
	var lastV1 time.Duration
	for _, a := range answers(t, ns, "bluegreen") {
		if a.sent.Before(switched) {
			before++
			continue
		}
		after++
		if a.version == "v1" {
			lastV1 = max(lastV1, a.sent.Sub(switched))
		}
		if a.sent.After(switched.Add(time.Second)) {
			late++
			if a.version != "v2" {
				lateV1++
			}
		}
	}
	t.Logf("blue-green: %d requests before the switch, %d after; the last request to v1 was sent %v after the switch", before, after, lastV1)
	if before == 0 || late == 0 {
		t.Fatalf("the switch did not happen under load: %d requests before, %d more than 1s after", before, late)
	}
	if lateV1 > 0 {
		t.Errorf("%d of %d requests sent more than 1s after the switch still reached v1", lateV1, late)
	}

	// A/B on headers: the matching users split 10/90, the others stay on v1.
	kubectl(t, fmt.Sprintf(abRoute, ns), "apply", "-f", "-")
	awaitAccepted(t, ns)
	runClient(t, ns, "ab-firefox", 400, "0s", "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Accept-Language: en-US,en;q=0.5")
	runClient(t, ns, "ab-other", 200, "0s", "User-Agent: curl/8.5.0")
	awaitClient(t, ns, "ab-firefox")
	awaitClient(t, ns, "ab-other")
	ab := map[string]map[string]int{}
	for _, job := range []string{"ab-firefox", "ab-other"} {
		ab[job] = map[string]int{}
		for _, a := range answers(t, ns, job) {
			ab[job][a.version]++
		}
	}
	t.Logf("A/B: matching users %v, others %v", ab["ab-firefox"], ab["ab-other"])
	if f := ab["ab-firefox"]; f["v1"]+f["v2"] != 400 || f["v2"] < 340 || f["v2"] > 380 {
		t.Errorf("matching users: %v, want about 90 %% of 400 on v2", f)
	}
	if o := ab["ab-other"]; o["v1"] != 200 {
		t.Errorf("other users: %v, want all 200 on v1", o)
	}

	// Shadow: the client sees only v1; v2's proxy receives the copies.
	v2pod := strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "version=v2", "-o", "name"))[0], "pod/")
	inbound := func() float64 {
		return sum(t, proxyMetrics(t, ns, v2pod), "request_total", `direction="inbound"`)
	}
	kubectl(t, fmt.Sprintf(mirrorRoute, ns), "apply", "-f", "-")
	awaitAccepted(t, ns)
	time.Sleep(2 * time.Second)
	before2 := inbound()
	runClient(t, ns, "shadow", 200, "10ms")
	awaitClient(t, ns, "shadow")
	seen := map[string]int{}
	for _, a := range answers(t, ns, "shadow") {
		seen[a.version]++
	}
	var copies float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if copies = inbound() - before2; copies >= 200 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("shadow: the client saw %v; v2 received %v copies", seen, copies)
	if seen["v1"] != 200 {
		t.Errorf("the client saw %v, want all 200 answers from v1", seen)
	}
	if copies < 190 || copies > 200 {
		t.Errorf("v2 received %v mirrored requests, want about 200", copies)
	}

	// The Services' annotations: retries turn a 10 % failure rate into
	// none; a request timeout answers 504.
	kubectl(t, fmt.Sprintf(annotatedApp, ns), "apply", "-f", "-")
	for _, d := range []string{"flaky", "slow"} {
		kubectl(t, "", "-n", ns, "rollout", "status", "deploy/"+d, "--timeout=120s")
	}
	runClientTo(t, ns, "retried", "flaky", 500, "0s")
	awaitClient(t, ns, "retried") // any failed request fails the Job
	flakyPod := strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=flaky", "-o", "name"))[0], "pod/")
	fm := proxyMetrics(t, ns, flakyPod)
	served, failed := sum(t, fm, "response_total", `direction="inbound"`), sum(t, fm, "response_total", `direction="inbound"`, `status_code="500"`)
	t.Logf("retries: 500 requests succeeded; the flaky server answered %v, %v of them 500", served, failed)
	if failed < 45 {
		t.Errorf("the flaky server failed only %v requests: the retries were not exercised", failed)
	}
	kubectl(t, fmt.Sprintf(routeClient, ns, "timed-out", clientImage, 1, "0s", "", "slow"), "apply", "-f", "-")
	if err := tryKubectl(t, "-n", ns, "wait", "job/timed-out", "--for=condition=Failed", "--timeout=120s"); err != nil {
		t.Fatalf("the request to the slow Service did not fail: %v", err)
	}
	if logs := tryOutput(t, "-n", ns, "logs", "job/timed-out", "-c", "client"); !strings.Contains(logs, "504") {
		t.Errorf("the slow Service's request: %q, want a 504", logs)
	}

	testFailureAccrual(t, ns)
}

// testFailureAccrual: the failing server gets 3 requests and is ejected
// (the client's requests meanwhile fail fast with 503 in its proxy); it is
// probed with one real request after 1 s, then (failing again) after 2 s,
// then after 4 s, when it has recovered and serves again: from about 8 s
// into the client's 15 s of requests. Without failure
// accrual its 5 failures would be the client's first 5 requests, 50 ms
// apart.
func testFailureAccrual(t *testing.T, ns string) {
	kubectl(t, fmt.Sprintf(accrualApp, ns), "apply", "-f", "-")
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/breaker", "--timeout=120s")
	kubectl(t, fmt.Sprintf(routeClient, ns, "breaker-client", clientImage, 300, "50ms", `, "-tally"`, "breaker"), "apply", "-f", "-")
	awaitClient(t, ns, "breaker-client")
	statuses := map[string]int{}
	for _, line := range strings.Split(kubectl(t, "", "-n", ns, "logs", "job/breaker-client", "-c", "client"), "\n") {
		var code string
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "status=%s count=%d", &code, &n); err == nil {
			statuses[code] = n
		}
	}
	var failures []time.Time
	for _, line := range strings.Split(kubectl(t, "", "-n", ns, "logs", "deploy/breaker", "-c", "server"), "\n") {
		_, ts, ok := strings.Cut(line, " t=")
		if !ok || !strings.HasPrefix(line, "failed request") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
		if err != nil {
			t.Fatalf("bad log line %q", line)
		}
		failures = append(failures, time.Unix(0, n))
	}
	t.Logf("failure accrual: the client saw %v", statuses)
	if len(failures) != 5 {
		t.Fatalf("the failing server answered %d failures, want 5", len(failures))
	}
	gaps := make([]time.Duration, 4)
	for i := range gaps {
		gaps[i] = failures[i+1].Sub(failures[i]).Round(time.Millisecond)
	}
	t.Logf("failure accrual: gaps between the server's 5 failures: %v", gaps)
	if gaps[2] < 900*time.Millisecond || gaps[3] < 1800*time.Millisecond {
		t.Errorf("failures 3→4 and 4→5 came %v and %v apart, want ≥ 1 s and ≥ 2 s (ejected, probed after each penalty)", gaps[2], gaps[3])
	}
	if statuses["500"] != 5 || statuses["503"] == 0 || statuses["200"] < 20 {
		t.Errorf("the client saw %v, want the 5 failures, fail-fast 503s while ejected, and ≥ 20 answers once the probe succeeded", statuses)
	}
}
