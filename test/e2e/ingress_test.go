//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/kubetest"
)

const nginxImage = "weft.local/nginx:dev"

// loadNginx packs this machine's Debian nginx (the binary, the libraries
// it loads, the dynamic loader) into an image for the node and loads it.
// The node is this machine, so its nginx fits; without one the test skips.
func loadNginx(t *testing.T) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("Debian's nginx is not installed (apt-get install nginx-light)")
	}
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("ldd %s: %v\n%s", bin, err, out)
	}
	files := map[string]string{"/usr/sbin/nginx": bin}
	for _, m := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		real, err := filepath.EvalSymlinks(m[1])
		if err != nil {
			t.Fatal(err)
		}
		files[m[1]] = real
	}
	tar := filepath.Join(t.TempDir(), "nginx.tar")
	img := kubetest.Image{Tag: nginxImage, Entrypoint: []string{"/usr/sbin/nginx"}, Files: files}
	if err := img.WriteArchive(tar); err != nil {
		t.Fatal(err)
	}
	load := exec.Command("go", "run", "./test/cluster/clusterctl", "load", tar)
	load.Dir = "../.."
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("loading the nginx image: %v\n%s", err, out)
	}
}

// A Service of three meshed replicas, and nginx as the ingress: meshed in
// ingress mode, proxying to the Service's cluster IP (what the NGINX
// ingress controller's nginx.ingress.kubernetes.io/service-upstream: "true"
// does) with the seed's proxy_set_header l5d-dst-override.
var ingressApp = yamlDocs(
	`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: server, namespace: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nginx-ingress, namespace: %[1]s}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: %[1]s}
`,
	testApp{Name: "server", Replicas: 3, Annotations: "linkerd.io/inject: enabled", SA: "server", Args: `"-http", ":8080"`}.yaml(),
	testService{Name: "server"}.yaml(),
	testService{Name: "nginx"}.yaml())

const nginxDeployment = `apiVersion: v1
kind: ConfigMap
metadata: {name: nginx, namespace: %[1]s}
data:
  nginx.conf: |
    worker_processes 1;
    pid /tmp/nginx.pid;
    error_log stderr info;
    events {}
    http {
      access_log /dev/stdout;
      client_body_temp_path /tmp/body;
      proxy_temp_path /tmp/proxy;
      fastcgi_temp_path /tmp/fastcgi;
      uwsgi_temp_path /tmp/uwsgi;
      scgi_temp_path /tmp/scgi;
      server {
        listen 8080;
        # service-upstream: the Service's cluster IP, not its endpoints.
        location / {
          proxy_pass http://%[2]s:80;
          proxy_set_header l5d-dst-override server.%[1]s.svc.cluster.local:80;
        }
        location /by-host/ {
          proxy_pass http://%[2]s:80;
          proxy_set_header Host server.%[1]s.svc.cluster.local;
        }
        location /bad/ {
          proxy_pass http://%[2]s:80;
          proxy_set_header l5d-dst-override "server.%[1]s.svc.cluster.local:http";
        }
      }
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: nginx}}
  template:
    metadata:
      labels: {app: nginx}
      annotations: {linkerd.io/inject: ingress}
    spec:
      serviceAccountName: nginx-ingress
      securityContext: {runAsUser: 101, runAsGroup: 101}
      containers:
      - name: nginx
        image: ` + nginxImage + `
        imagePullPolicy: IfNotPresent
        args: ["-e", "stderr", "-c", "/etc/weft-nginx/nginx.conf", "-g", "daemon off;"]
        ports: [{containerPort: 8080}]
        volumeMounts:
        - {name: conf, mountPath: /etc/weft-nginx}
        - {name: tmp, mountPath: /tmp}
      volumes:
      - {name: conf, configMap: {name: nginx}}
      - {name: tmp, emptyDir: {}}
`

// ingressClients are unmeshed clients from outside the mesh, in parallel.
// Right after nginx's rollout kube-proxy may not have its endpoint yet (it
// syncs at most once a second): a refused first connection is tried again.
const ingressClients = `apiVersion: batch/v1
kind: Job
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  backoffLimit: 0
  parallelism: %[3]d
  completions: %[3]d
  template:
    spec:
      serviceAccountName: client
      restartPolicy: Never
      containers:
      - name: client
        image: ` + clientImage + `
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://nginx.%[1]s.svc.cluster.local%[4]s", "-n", "%[5]d", "-wait-refused", "30s"%[6]s]
`

// TestIngressNginx: requests from outside the mesh enter through Debian's
// nginx meshed in ingress mode and reach a 3-replica meshed Service over
// mTLS, balanced by Weft over all replicas (by l5d-dst-override, and by
// Host without it); the replicas' inbound metrics name the ingress's
// ServiceAccount; a malformed override is answered 400 at once.
func TestIngressNginx(t *testing.T) {
	installControlPlane(t)
	loadNginx(t)
	ns := fmt.Sprintf("ingress-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(ingressApp, ns), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	clusterIP := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "svc", "server", "-o", "jsonpath={.spec.clusterIP}"))
	kubectl(t, fmt.Sprintf(nginxDeployment, ns, clusterIP), "apply", "-f", "-")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- nginx:\n%s", tryOutput(t, "-n", ns, "logs", "deploy/nginx", "-c", "nginx", "--tail", "30"))
			t.Logf("--- nginx's proxy:\n%s", tryOutput(t, "-n", ns, "logs", "deploy/nginx", "-c", "linkerd-proxy", "--tail", "30"))
		}
	})
	for _, d := range []string{"server", "nginx"} {
		kubectl(t, "", "-n", ns, "rollout", "status", "deploy/"+d, "--timeout=120s")
	}
	if mode := kubectl(t, "", "-n", ns, "get", "pod", "-l", "app=nginx", "-o", `jsonpath={.items[0].spec.containers[?(@.name=="linkerd-proxy")].env[?(@.name=="LINKERD2_PROXY_INGRESS_MODE")].value}`); mode != "true" {
		t.Fatalf("nginx's proxy is not in ingress mode (LINKERD2_PROXY_INGRESS_MODE=%q)", mode)
	}

	const clients, each, byHost = 3, 40, 20
	kubectl(t, fmt.Sprintf(ingressClients, ns, "via-override", clients, "/", each, ""), "apply", "-f", "-")
	kubectl(t, fmt.Sprintf(ingressClients, ns, "via-host", 1, "/by-host/", byHost, ""), "apply", "-f", "-")
	kubectl(t, fmt.Sprintf(ingressClients, ns, "bad", 1, "/bad/", 1, `, "-tally"`), "apply", "-f", "-")
	for _, job := range []string{"via-override", "via-host", "bad"} {
		if err := tryKubectl(t, "-n", ns, "wait", "job/"+job, "--for=condition=Complete", "--timeout=180s"); err != nil {
			t.Fatalf("clients %s did not complete: %v\n%s", job, err, tryOutput(t, "-n", ns, "logs", "-l", "job-name="+job, "--tail", "20"))
		}
	}
	ingressID := "nginx-ingress." + ns + ".serviceaccount.identity.linkerd.cluster.local"
	perPod := map[string]int{}
	answered := 0
	for _, job := range []string{"via-override", "via-host"} {
		logs := kubectl(t, "", "-n", ns, "logs", "-l", "job-name="+job, "--tail", "-1")
		for _, line := range strings.Split(logs, "\n") {
			if f := strings.Fields(line); len(f) > 2 && strings.HasPrefix(f[0], "host=server-") {
				answered++
				perPod[strings.TrimPrefix(f[0], "host=")]++
				if f[2] != "client-id="+ingressID {
					t.Errorf("%s: the server saw %s, want client-id=%s", job, f[2], ingressID)
				}
			}
		}
	}
	t.Logf("answers per replica: %v", perPod)
	if want := clients*each + byHost; answered != want {
		t.Errorf("%d answers, want %d", answered, want)
	}
	if bad := kubectl(t, "", "-n", ns, "logs", "job/bad"); !strings.Contains(bad, "status=400 count=1") {
		t.Errorf("a malformed l5d-dst-override: %q, want one 400", bad)
	}

	pods := strings.Fields(kubectl(t, "", "-n", ns, "get", "pod", "-l", "app=server", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(pods) != 3 {
		t.Fatalf("server pods %v, want 3", pods)
	}
	total := 0.0
	for _, pod := range pods {
		m := proxyMetrics(t, ns, pod)
		v := sum(t, m, "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+ingressID+`"`)
		t.Logf("%s: %v mTLS requests from %s (answers seen by clients: %d)", pod, v, ingressID, perPod[pod])
		if v == 0 {
			t.Errorf("replica %s served no mTLS request from the ingress: not balanced over all replicas", pod)
		}
		total += v
	}
	if want := float64(clients*each + byHost); total != want {
		t.Errorf("replicas counted %v mTLS requests from the ingress, want %d", total, int(want))
	}
}
