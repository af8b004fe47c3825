//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func kubeconfig(t *testing.T) string {
	t.Helper()
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		kc = "/tmp/weft-cluster/kubeconfig"
	}
	if _, err := os.Stat(kc); err != nil {
		t.Fatalf("no cluster (%v): run `make cluster-up` first", err)
	}
	return kc
}

// runKubectl runs kubectl against the test cluster with stdin ("" for
// none), bounded beyond any --timeout a caller gives.
func runKubectl(t *testing.T, stdin string, args ...string) (string, error) {
	home, _ := os.UserHomeDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(home, ".cache/weft/bin/kubectl"), append([]string{"--kubeconfig", kubeconfig(t)}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubectl runs kubectl and fails the test if it fails.
func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := runKubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryKubectl runs kubectl for its exit status.
func tryKubectl(t *testing.T, args ...string) error {
	_, err := runKubectl(t, "", args...)
	return err
}

// tryOutput runs kubectl and returns its output or its error, for logs.
func tryOutput(t *testing.T, args ...string) string {
	out, err := runKubectl(t, "", args...)
	if err != nil {
		return fmt.Sprintf("%v: %s", err, out)
	}
	return out
}

var app = yamlDocs(
	`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
`,
	testApp{Name: "web", Replicas: 2, Container: "web", Args: `"-http", ":8080"`, More: "        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}\n"}.yaml(),
	testService{Name: "web"}.yaml(),
	`apiVersion: v1
kind: Pod
metadata: {name: client, namespace: %[1]s}
spec:
  containers:
  - name: client
    image: weft.local/testapp:dev
    imagePullPolicy: IfNotPresent
    args: ["-http", ":9090"]
`)

const job = `apiVersion: batch/v1
kind: Job
metadata: {name: fetch, namespace: %[1]s}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: init
        image: weft.local/testapp:dev
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://web.%[1]s.svc.cluster.local/init", "-n", "1"]
      containers:
      - name: fetch
        image: weft.local/testapp:dev
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://web/from-job", "-n", "3"]
`

func TestSmoke(t *testing.T) {
	ns := fmt.Sprintf("smoke-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(app, ns), "apply", "-f", "-")
	t.Cleanup(func() { kubectl(t, "", "delete", "namespace", ns, "--wait=false") })
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
	kubectl(t, "", "-n", ns, "wait", "pod/client", "--for=condition=Ready", "--timeout=60s")

	// By DNS name and by ClusterIP, from another pod (kubectl exec works).
	ip := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"))
	if !strings.HasPrefix(ip, "198.19.") {
		t.Errorf("ClusterIP %s is outside the service range 198.19.0.0/16", ip)
	}
	// kube-proxy programs a new Service shortly after it exists: wait for it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if tryKubectl(t, "-n", ns, "exec", "client", "--", "/testapp", "-get", "http://"+ip+"/", "-n", "1") == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Service did not answer within 60s")
		}
		time.Sleep(time.Second)
	}
	hosts := map[string]bool{}
	for _, url := range []string{"http://web." + ns + ".svc.cluster.local/dns", "http://web/short-name", "http://" + ip + "/clusterip"} {
		out := kubectl(t, "", "-n", ns, "exec", "client", "--", "/testapp", "-get", url, "-n", "10")
		if strings.Count(out, "host=web-") != 10 {
			t.Fatalf("GET %s from the client pod:\n%s", url, out)
		}
		answeredBy(t, out, hosts)
	}
	// kube-proxy may still hold an older endpoint set (it syncs at most
	// once a second): keep asking, bounded, until both replicas answered.
	sent := 30
	for deadline := time.Now().Add(30 * time.Second); len(hosts) < 2 && time.Now().Before(deadline); sent += 10 {
		out := kubectl(t, "", "-n", ns, "exec", "client", "--", "/testapp", "-get", "http://"+ip+"/spread", "-n", "10")
		answeredBy(t, out, hosts)
	}
	if len(hosts) != 2 {
		t.Errorf("%d requests through the Service, each on a new connection, reached %d pods (%v), want both replicas", sent, len(hosts), hosts)
	}

	// A Job (with an init container) that completes, and its logs.
	kubectl(t, fmt.Sprintf(job, ns), "apply", "-f", "-")
	kubectl(t, "", "-n", ns, "wait", "job/fetch", "--for=condition=Complete", "--timeout=90s")
	logs := kubectl(t, "", "-n", ns, "logs", "job/fetch", "-c", "fetch")
	if strings.Count(logs, "path=/from-job") != 3 {
		t.Errorf("job logs:\n%s", logs)
	}
}

// answeredBy adds the replicas named in out's "host=..." lines to hosts.
// Other lines are kubectl's own (its exec stream once logged an error
// line, which counted as a third replica) and only logged.
func answeredBy(t *testing.T, out string, hosts map[string]bool) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "host=") {
			hosts[f[0]] = true
		} else if line != "" {
			t.Logf("not an answer: %q", line)
		}
	}
}
