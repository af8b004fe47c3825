//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// The seeds' values shape (only the injector's settings, collector off),
// pointed at the chart's own Jaeger, meshed in linkerd-jaeger: proxies
// export OTLP over mTLS to it and require its identity (ServiceAccount
// jaeger).
const jaegerValues = `collector:
  enabled: false
jaeger:
  enabled: true
webhook:
  collectorSvcAddr: jaeger.linkerd-jaeger:4317
  collectorSvcAccount: jaeger
  collectorTraceProtocol: opentelemetry
`

// Three meshed services in a chain: svc-a calls svc-b, which calls svc-c,
// each forwarding the trace headers it received (testapp -next).
const tracedService = `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[2]s}}
  template:
    metadata: {labels: {app: %[2]s}}
    spec:
      containers:
      - name: app
        image: %[3]s
        imagePullPolicy: IfNotPresent
        args: ["-http", ":8080"%[4]s]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  selector: {app: %[2]s}
  ports: [{port: 80, targetPort: 8080}]
`

// tracedManifest is namespace ns with svc-a → svc-b → svc-c.
func tracedManifest(ns string) string {
	out := fmt.Sprintf(meshedNamespace, ns)
	for _, c := range [][2]string{{"svc-a", "svc-b"}, {"svc-b", "svc-c"}, {"svc-c", ""}} {
		next := ""
		if c[1] != "" {
			next = fmt.Sprintf(`, "-next", "http://%s.%s.svc.cluster.local/"`, c[1], ns)
		}
		out += fmt.Sprintf(tracedService, ns, c[0], clientImage, next)
	}
	return out
}

// jaegerTrace is the part of Jaeger's query API answer the test reads.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		ProcessID string     `json:"processID"`
		Tags      []jaegerKV `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string     `json:"serviceName"`
		Tags        []jaegerKV `json:"tags"`
	} `json:"processes"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func tag(kvs []jaegerKV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// hop is one proxy span as the test expects it.
type hop struct {
	kind, workload string // server|client; the app label, or the client Job's name
}

// The request's path through the proxies: the client Job's proxy
// (outbound), then svc-a, svc-b, svc-c, each inbound then outbound; every
// span the child of the one before.
func wantHops(job string) []hop {
	return []hop{{"client", job}, {"server", "svc-a"}, {"client", "svc-a"}, {"server", "svc-b"}, {"client", "svc-b"}, {"server", "svc-c"}}
}

// TestJaegerTracing: the jaeger extension with the chart's Jaeger (built
// from Jaeger's Go module by make images); a request carrying a sampled
// context (W3C traceparent, b3 single, b3 multi) crosses three meshed
// services; Jaeger's query API returns one trace with a client and a
// server span per proxy hop, linked parent to child, with the proxies'
// service name and each workload's pod labels. Then weft jaeger dashboard
// forwards to Jaeger's UI.
func TestJaegerTracing(t *testing.T) {
	installControlPlane(t)
	w := buildWeft(t)
	dir := t.TempDir()
	valuesFile := filepath.Join(dir, "linkerd-jaeger-values.yaml")
	if err := os.WriteFile(valuesFile, []byte(jaegerValues), 0o600); err != nil {
		t.Fatal(err)
	}
	manifests, err := weft(t, w, "jaeger", "install", "-f", valuesFile)
	if err != nil {
		t.Fatalf("weft jaeger install: %v\n%s", err, manifests)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- linkerd-jaeger pods:\n%s", tryOutput(t, "-n", compat.JaegerNamespace, "get", "pods", "-o", "wide"))
			t.Logf("--- jaeger logs:\n%s", tryOutput(t, "-n", compat.JaegerNamespace, "logs", "deploy/jaeger", "--all-containers", "--tail", "40"))
		}
		if out, err := weft(t, w, "jaeger", "uninstall"); err == nil {
			runKubectl(t, out, "delete", "-f", "-", "--wait=true", "--timeout=90s")
		}
	})
	start := time.Now()
	kubectl(t, manifests, "apply", "-f", "-")
	for _, d := range []string{"jaeger-injector", "jaeger"} {
		kubectl(t, "", "-n", compat.JaegerNamespace, "rollout", "status", "deploy/"+d, "--timeout=180s")
	}
	if c := tryOutput(t, "-n", compat.JaegerNamespace, "get", "pod", "-l", "component=jaeger", "-o", "jsonpath={.items[0].spec.containers[*].name}"); !strings.Contains(c, "linkerd-proxy") {
		t.Fatalf("Jaeger not meshed: containers %q", c)
	}
	if out, err := weft(t, w, "jaeger", "check"); err != nil {
		t.Fatalf("weft jaeger check: %v\n%s", err, out)
	}
	waitJaegerInjector(t)
	t.Logf("jaeger extension ready in %v", time.Since(start).Round(time.Second))

	ns := fmt.Sprintf("traced-%d", time.Now().Unix()%100000)
	kubectl(t, tracedManifest(ns), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	for _, d := range []string{"svc-a", "svc-b", "svc-c"} {
		kubectl(t, "", "-n", ns, "rollout", "status", "deploy/"+d, "--timeout=120s")
	}
	env := kubectl(t, "", "-n", ns, "get", "pod", "-l", "app=svc-b", "-o", "jsonpath={.items[0].spec.containers[?(@.name==\"linkerd-proxy\")].env}")
	if !strings.Contains(env, compat.EnvTraceCollectorSvcAddr) || !strings.Contains(env, "jaeger.linkerd-jaeger.serviceaccount.identity.linkerd.cluster.local") {
		t.Fatalf("svc-b's proxy has no trace settings: %s", env)
	}

	for _, tc := range []struct {
		name   string
		header func(traceID, spanID string) []string
	}{
		{"w3c", func(tr, sp string) []string { return []string{"traceparent: 00-" + tr + "-" + sp + "-01"} }},
		{"b3", func(tr, sp string) []string { return []string{"b3: " + tr + "-" + sp + "-1"} }},
		{"b3multi", func(tr, sp string) []string {
			return []string{"X-B3-TraceId: " + tr, "X-B3-SpanId: " + sp, "X-B3-Sampled: 1"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			traceID, spanID := randomHex(t, 16), randomHex(t, 8)
			job := "trace-" + tc.name
			sent := time.Now()
			extra := ""
			for _, h := range tc.header(traceID, spanID) {
				extra += fmt.Sprintf(", \"-header\", %q", h)
			}
			// Not runClientTo: one request can be over before the pod is seen Ready.
			kubectl(t, fmt.Sprintf(routeClient, ns, job, clientImage, 1, "0s", extra, "svc-a"), "apply", "-f", "-")
			awaitClient(t, ns, job)
			logs := kubectl(t, "", "-n", ns, "logs", "job/"+job, "-c", "client")
			for _, svc := range []string{"svc-a", "svc-b", "svc-c"} {
				if !strings.Contains(logs, "host="+svc+"-") {
					t.Fatalf("the request did not cross %s:\n%s", svc, logs)
				}
			}
			tr := waitTrace(t, traceID, len(wantHops(job)))
			t.Logf("%s: %d spans of trace %s in Jaeger %v after the request was sent", tc.name, len(tr.Spans), traceID, time.Since(sent).Round(100*time.Millisecond))
			checkTrace(t, tr, traceID, spanID, ns, wantHops(job))
		})
	}

	testJaegerDashboard(t, w)
}

// waitJaegerInjector waits until the API server reaches the jaeger
// injector: a dry-run pod in a meshed namespace comes back with the trace
// collector in its proxy's env.
func waitJaegerInjector(t *testing.T) {
	t.Helper()
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: probe, namespace: weft-probe}\nspec: {containers: [{name: app, image: weft.local/testapp:dev}]}\n"
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		out, _ := runKubectl(t, pod, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.containers[*].env[*].name}")
		if strings.Contains(out, compat.EnvTraceCollectorSvcAddr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the jaeger injector did not answer admission within 90s (last: %s)", out)
		}
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitTrace asks Jaeger's query API, through the API server's service
// proxy, for the traces of service linkerd-proxy until the one with
// traceID has want spans (a minute at most: the proxies export every
// second). It fails unless exactly one trace has that id.
func waitTrace(t *testing.T, traceID string, want int) jaegerTrace {
	t.Helper()
	q := url.Values{"service": {"linkerd-proxy"}, "limit": {"200"}, "lookback": {"1h"}}
	path := "/api/v1/namespaces/" + compat.JaegerNamespace + "/services/jaeger:ui/proxy/api/traces?" + q.Encode()
	var last string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Second) {
		out, err := runKubectl(t, "", "get", "--raw", path)
		last = out
		if err == nil {
			var resp struct {
				Data []jaegerTrace `json:"data"`
			}
			if err := json.Unmarshal([]byte(out), &resp); err != nil {
				t.Fatalf("Jaeger's /api/traces: %v\n%s", err, clip([]byte(out)))
			}
			var found []jaegerTrace
			for _, tr := range resp.Data {
				if tr.TraceID == traceID {
					found = append(found, tr)
				}
			}
			if len(found) > 1 {
				t.Fatalf("Jaeger returned %d traces with id %s, want one", len(found), traceID)
			}
			if len(found) == 1 && len(found[0].Spans) >= want {
				return found[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: fewer than %d spans in Jaeger after 60s; last answer: %s", traceID, want, clip([]byte(last)))
		}
	}
}

// checkTrace matches the trace's spans to the expected hops: each hop's
// span has the right kind and direction and comes from the right
// workload's proxy (process service name linkerd-proxy, pod labels and
// namespace in its tags), and is the child of the previous hop's span —
// the first one of the client's own span.
func checkTrace(t *testing.T, tr jaegerTrace, traceID, clientSpan, ns string, hops []hop) {
	t.Helper()
	if len(tr.Spans) != len(hops) {
		t.Errorf("%d spans, want %d (a client and a server span per proxy hop)", len(tr.Spans), len(hops))
	}
	bySpan := map[string]int{}
	for i, s := range tr.Spans {
		bySpan[s.SpanID] = i
	}
	parent := clientSpan
	for _, h := range hops {
		var child = -1
		for i, s := range tr.Spans {
			if len(s.References) == 1 && s.References[0].SpanID == parent && s.References[0].RefType == "CHILD_OF" {
				child = i
			}
		}
		if child < 0 {
			t.Fatalf("no span is the child of %s (want the %s span of %s); spans:\n%s", parent, h.kind, h.workload, describeSpans(tr))
		}
		s := tr.Spans[child]
		p := tr.Processes[s.ProcessID]
		dir := map[string]string{"server": "inbound", "client": "outbound"}[h.kind]
		workload := tag(p.Tags, "app")
		if workload == "" {
			workload = tag(p.Tags, "job-name")
		}
		if got := tag(s.Tags, "span.kind"); got != h.kind || tag(s.Tags, "direction") != dir || workload != h.workload ||
			p.ServiceName != "linkerd-proxy" || tag(p.Tags, "k8s.namespace.name") != ns || s.TraceID != traceID || s.OperationName != "/" {
			t.Errorf("child of %s: span %s kind %q direction %q, from %q of service %q in namespace %q, trace %s, operation %q; want a %s span from %s's proxy in %s",
				parent, s.SpanID, got, tag(s.Tags, "direction"), workload, p.ServiceName, tag(p.Tags, "k8s.namespace.name"), s.TraceID, s.OperationName, h.kind, h.workload, ns)
		}
		parent = s.SpanID
	}
	if t.Failed() {
		t.Logf("spans:\n%s", describeSpans(tr))
	}
}

func describeSpans(tr jaegerTrace) string {
	var b strings.Builder
	for _, s := range tr.Spans {
		p := tr.Processes[s.ProcessID]
		refs := []string{}
		for _, r := range s.References {
			refs = append(refs, r.RefType+":"+r.SpanID)
		}
		fmt.Fprintf(&b, "  %s %s %s kind=%s app=%s pod=%s refs=%v\n", s.SpanID, s.OperationName, p.ServiceName,
			tag(s.Tags, "span.kind"), tag(p.Tags, "app")+tag(p.Tags, "job-name"), tag(p.Tags, "k8s.pod.name"), refs)
	}
	return b.String()
}

// testJaegerDashboard runs weft jaeger dashboard, reads the URL it prints
// and asks the forwarded Jaeger for its UI and its services.
func testJaegerDashboard(t *testing.T, bin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "jaeger", "dashboard", "--port", "0", "--show", "url")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig(t))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	base := ""
	for lines.Scan() {
		if l := lines.Text(); strings.HasPrefix(l, "http://") {
			base = l
			break
		}
	}
	if base == "" {
		t.Fatalf("weft jaeger dashboard printed no URL: %s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	for path, want := range map[string]string{"/": "<title>", "/api/services": `"linkerd-proxy"`} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", base, path, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s%s: %s, want 200 with %s: %s", base, path, resp.Status, want, clip(b))
		}
	}
	t.Logf("weft jaeger dashboard forwarded %s to Jaeger's UI", base)
}
