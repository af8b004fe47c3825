//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/identity/pki"
)

// installControlPlane installs charts/weft-control-plane with a fresh trust
// anchor and issuer, from the images built from this tree (the chart's
// default image names: no image values).
func installControlPlane(t *testing.T) {
	t.Helper()
	buildImages(t)
	dir := t.TempDir()
	now := time.Now()
	root, err := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := pki.NewIssuer(root, "identity.linkerd.cluster.local", now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"ca.crt": root.CertPEM, "issuer.crt": issuer.CertPEM, "issuer.key": issuer.KeyPEM} {
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
	helm(t, "uninstall", "weft-control-plane", "-n", "linkerd", "--ignore-not-found", "--wait")
	tryKubectl(t, "delete", "namespace", "linkerd", "--ignore-not-found", "--wait=true")
	// Registered before the install, so that an install that never gets
	// ready says why.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- linkerd pods:\n%s", tryOutput(t, "-n", "linkerd", "get", "pods", "-o", "wide"))
			for _, d := range []string{"linkerd-identity", "linkerd-destination", "linkerd-proxy-injector"} {
				t.Logf("--- %s logs:\n%s", d, tryOutput(t, "-n", "linkerd", "logs", "deploy/"+d, "--all-containers", "--tail", "40"))
			}
		}
		helm(t, "uninstall", "weft-control-plane", "-n", "linkerd", "--ignore-not-found", "--wait")
		removeNamespace(t, "linkerd")
	})
	helm(t, "install", "weft-control-plane", "../../charts/weft-control-plane", "-n", "linkerd", "--create-namespace",
		"--set-file", "identityTrustAnchorsPEM="+filepath.Join(dir, "ca.crt"),
		"--set-file", "identity.issuer.tls.crtPEM="+filepath.Join(dir, "issuer.crt"),
		"--set-file", "identity.issuer.tls.keyPEM="+filepath.Join(dir, "issuer.key"),
		"--set", "controllerLogLevel=debug", "--wait", "--timeout", "3m")
	waitInjector(t)
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	home, _ := os.UserHomeDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(home, ".cache/weft/bin/helm"), append([]string{"--kubeconfig", kubeconfig(t)}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var meshedApp = yamlDocs(
	testNamespace{}.yaml(),
	testApp{Name: "server", Replicas: 2}.yaml(),
	testService{Name: "server"}.yaml(),
	`apiVersion: apps/v1
kind: Deployment
metadata: {name: unmeshed, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: unmeshed}}
  template:
    metadata:
      labels: {app: unmeshed}
      annotations: {linkerd.io/inject: disabled}
    spec:
      containers: [{name: app, image: weft.local/testapp:dev, imagePullPolicy: IfNotPresent, args: ["-http", "0.0.0.0:8080"]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: hostnet, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: hostnet}}
  template:
    metadata: {labels: {app: hostnet}}
    spec:
      hostNetwork: true
      containers: [{name: app, image: weft.local/testapp:dev, imagePullPolicy: IfNotPresent, args: ["-http", "127.0.0.1:18089"]}]
`)

// Two Jobs that must finish although meshed: one with the proxy as a
// native sidecar, one wrapped in weft-await --shutdown.
const meshedJobs = `apiVersion: batch/v1
kind: Job
metadata: {name: native, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {config.linkerd.io/proxy-enable-native-sidecar: enabled}
    spec:
      restartPolicy: Never
      containers:
      - name: client
        image: %[2]s
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://server.%[1]s.svc.cluster.local/native", "-n", "20"]
---
apiVersion: batch/v1
kind: Job
metadata: {name: awaited, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    metadata:
      annotations: {config.linkerd.io/proxy-admin-shutdown: enabled}
    spec:
      restartPolicy: Never
      containers:
      - name: client
        image: %[2]s
        imagePullPolicy: IfNotPresent
        command: ["/weft-await", "--shutdown", "--timeout", "60s", "--", "/testapp"]
        args: ["-get", "http://server/awaited", "-n", "10"]
`

func TestInjection(t *testing.T) {
	installControlPlane(t)
	ns := fmt.Sprintf("inject-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(meshedApp, ns), "apply", "-f", "-")
	// A proxy with a CPU limit of one core (Go's own default would be 2).
	kubectl(t, fmt.Sprintf(testApp{Name: "narrow", Annotations: "config.linkerd.io/proxy-cpu-limit: '1'"}.yaml(), ns), "apply", "-f", "-")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- pods:\n%s", tryOutput(t, "-n", ns, "get", "pods", "-o", "wide"))
			t.Logf("--- events:\n%s", tryOutput(t, "-n", ns, "get", "events"))
		}
		kubectl(t, "", "delete", "namespace", ns, "--wait=false")
	})
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/unmeshed", "--timeout=60s")
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/narrow", "--timeout=60s")
	kubectl(t, "", "-n", ns, "rollout", "status", "ds/hostnet", "--timeout=60s")

	containers := func(selector string) []string {
		out := kubectl(t, "", "-n", ns, "get", "pods", "-l", selector, "-o",
			`jsonpath={range .items[*]}{range .spec.initContainers[*]}init:{.name},{end}{range .spec.containers[*]}{.name},{end};{end}`)
		return strings.Split(strings.TrimSuffix(strings.TrimSpace(out), ";"), ";")
	}
	for _, pod := range containers("app=server") {
		if pod != "init:linkerd-init,linkerd-proxy,server," {
			t.Errorf("server pod containers %q, want linkerd-init, linkerd-proxy (first, for await), server", pod)
		}
	}
	for _, sel := range []string{"app=unmeshed", "app=hostnet"} {
		for _, pod := range containers(sel) {
			if strings.Contains(pod, "linkerd") {
				t.Errorf("%s: containers %q, want no proxy", sel, pod)
			}
		}
	}
	// kube-system is excluded by the webhook's namespaceSelector, whatever
	// the pod asks for.
	sys := "weft-e2e-" + ns
	kubectl(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: kube-system, annotations: {linkerd.io/inject: enabled}}
spec: {containers: [{name: app, image: weft.local/testapp:dev, imagePullPolicy: IfNotPresent, args: ["-http", "0.0.0.0:8080"]}]}
`, sys), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "-n", "kube-system", "delete", "pod", sys, "--wait=false") })
	if got := kubectl(t, "", "-n", "kube-system", "get", "pod", sys, "-o", "jsonpath={.spec.containers[*].name}"); got != "app" {
		t.Errorf("kube-system pod containers %q, want the app alone", got)
	}
	events := kubectl(t, "", "-n", ns, "get", "events", "-o", "custom-columns=OBJ:.involvedObject.name,REASON:.reason,MSG:.message")
	for _, want := range []string{"server .*Injected", "hostnet .*Skipped.*hostNetwork is enabled"} {
		if !regexpMatch(want, events) {
			t.Errorf("no event matching %q:\n%s", want, events)
		}
	}
	// linkerd-init printed the rules it wrote in the pod's network namespace.
	pod := strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=server", "-o", "name"))[0]
	if logs := kubectl(t, "", "-n", ns, "logs", pod, "-c", "linkerd-init"); !strings.Contains(logs, "-A PREROUTING") ||
		!strings.Contains(logs, "PROXY_INIT_OUTPUT -m owner --uid-owner 2102") {
		t.Errorf("linkerd-init wrote:\n%s", logs)
	}

	kubectl(t, fmt.Sprintf(meshedJobs, ns, clientImage), "apply", "-f", "-")
	for _, job := range []string{"native", "awaited"} {
		if err := tryKubectl(t, "-n", ns, "wait", "job/"+job, "--for=condition=Complete", "--timeout=120s"); err != nil {
			t.Errorf("job %s did not complete: %v\n%s", job, err, tryOutput(t, "-n", ns, "logs", "job/"+job, "--all-containers"))
		}
	}
	// Every request reached the servers over mTLS from the jobs' identity.
	var mtls float64
	for _, p := range strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=server", "-o", "name")) {
		name := strings.TrimPrefix(p, "pod/")
		metrics := kubectl(t, "", "get", "--raw", "/api/v1/namespaces/"+ns+"/pods/"+name+":4191/proxy/metrics")
		mtls += sum(t, metrics, "request_total", `direction="inbound"`, `tls="true"`, `client_id="default.`+ns+`.serviceaccount.identity.linkerd.cluster.local"`)
	}
	if mtls != 30 {
		t.Errorf("the servers' proxies saw %v mTLS requests from the jobs, want 30", mtls)
	}
	// Cores: two by default (or the node's one), and the CPU limit's one.
	cpus, err := strconv.Atoi(strings.TrimSpace(kubectl(t, "", "get", "nodes", "-o", "jsonpath={.items[0].status.capacity.cpu}")))
	if err != nil {
		t.Fatalf("the node's CPUs: %v", err)
	}
	for sel, want := range map[string]string{"app=server": fmt.Sprint(min(2, cpus)), "app=narrow": "1"} {
		for _, p := range strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", sel, "-o", "name")) {
			m := proxyMetrics(t, ns, strings.TrimPrefix(p, "pod/"))
			if got := fmt.Sprint(sum(t, m, "go_sched_gomaxprocs_threads")); got != want {
				t.Errorf("%s: the proxy runs on %s cores (go_sched_gomaxprocs_threads), want %s (the node has %d CPUs)", p, got, want, cpus)
			}
		}
	}
	// The injector's own measure of its admission latency, in the cluster.
	injector := strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", "linkerd", "get", "pods", "-l",
		"linkerd.io/control-plane-component=proxy-injector", "-o", "name"))[0], "pod/")
	metrics := kubectl(t, "", "get", "--raw", "/api/v1/namespaces/linkerd/pods/"+injector+":9995/proxy/metrics")
	total := sum(t, metrics, "proxy_inject_admission_duration_seconds_count")
	fast := sum(t, metrics, "proxy_inject_admission_duration_seconds_bucket", `le="0.005"`)
	t.Logf("in-cluster admissions: %v of %v answered within 5 ms", fast, total)
	if total < 5 {
		t.Errorf("the injector measured %v admissions, want one per pod and service created", total)
	}
}
