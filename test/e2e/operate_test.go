//go:build e2e

package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/identity/pki"
)

var operatedApp = yamlDocs(
	testNamespace{SAs: []string{"server", "client"}}.yaml(),
	testApp{Name: "server", Replicas: 3, SA: "server"}.yaml(),
	testService{Name: "server"}.yaml())

// The client: steady traffic (about 20 requests a second for about 60 s)
// through the Service name; any failed request fails the Job.
const steadyClient = `apiVersion: batch/v1
kind: Job
metadata: {name: client, namespace: %[1]s}
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
        image: %[2]s
        imagePullPolicy: IfNotPresent
        args: ["-get", "http://server/steady", "-n", "%[3]d", "-interval", "50ms"]
`

// TestOperations installs with Helm (issuer from a kubernetes.io/tls Secret,
// as cert-manager keeps it), then, under steady meshed traffic from a
// client to a 3-replica server: rotates the issuer Secret and upgrades the
// control plane with helm upgrade; no request may fail. Then it uninstalls
// and checks nothing is left.
func TestOperations(t *testing.T) {
	buildImages(t)
	w := buildWeft(t)
	removeNamespace(t, "linkerd")
	now := time.Now()
	root, err := pki.NewRoot("root.linkerd.cluster.local", now.Add(-time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuerSecret := func(notBefore time.Time) string {
		iss, err := pki.NewIssuer(root, "identity.linkerd.cluster.local", notBefore, 48*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
		return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: linkerd-identity-issuer, namespace: linkerd}\ntype: kubernetes.io/tls\ndata: {tls.crt: %s, tls.key: %s, ca.crt: %s}\n",
			b64(iss.CertPEM), b64(iss.KeyPEM), b64(root.CertPEM))
	}
	kubectl(t, "", "create", "namespace", "linkerd")
	kubectl(t, issuerSecret(now.Add(-time.Minute)), "apply", "-f", "-")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(caFile, root.CertPEM, 0o600)
	crdArgs := []string{"install", "weft-crds", "../../charts/weft-crds", "-n", "linkerd"}
	if tryKubectl(t, "get", "crd", "httproutes.gateway.networking.k8s.io") == nil {
		crdArgs = append(crdArgs, "--set", "installGatewayAPI=false")
	}
	helm(t, crdArgs...)
	helm(t, "install", "weft-control-plane", "../../charts/weft-control-plane", "-n", "linkerd",
		"--set-file", "identityTrustAnchorsPEM="+caFile, "--set", "identity.issuer.scheme=kubernetes.io/tls",
		"--wait", "--timeout", "3m")
	waitInjector(t)
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			helm(t, "uninstall", "weft-control-plane", "-n", "linkerd", "--ignore-not-found", "--wait")
			helm(t, "uninstall", "weft-crds", "-n", "linkerd", "--ignore-not-found", "--wait")
			removeNamespace(t, "linkerd")
		}
	})
	if out, err := weft(t, w, "check"); err != nil {
		t.Fatalf("weft check: %v\n%s", err, out)
	}

	ns := fmt.Sprintf("ops-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(operatedApp, ns), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
	const requests = 1200
	kubectl(t, fmt.Sprintf(steadyClient, ns, clientImage, requests), "apply", "-f", "-")
	kubectl(t, "", "-n", ns, "wait", "pod", "-l", "job-name=client", "--for=condition=Ready", "--timeout=60s")

	// Mid-traffic: the issuer rotated, as cert-manager renews it ...
	time.Sleep(5 * time.Second)
	kubectl(t, issuerSecret(time.Now().Add(-time.Minute)), "apply", "-f", "-")

	// The client's proxy, while it runs: responses over mTLS from the
	// server's identity. Read now, not after the upgrade: the Job's 60 s
	// of traffic can end before helm upgrade --wait returns on a loaded
	// machine, and a completed pod's address no longer answers (CI saw
	// "dial tcp ...:4191: i/o timeout" there). After the upgrade, the
	// servers' side below counts every request, over mTLS, from the
	// client's identity.
	id := func(sa string) string { return sa + "." + ns + ".serviceaccount.identity.linkerd.cluster.local" }
	clientPod := strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "job-name=client", "-o", "name"))[0], "pod/")
	cm := kubectl(t, "", "get", "--raw", "/api/v1/namespaces/"+ns+"/pods/"+clientPod+":4191/proxy/metrics")
	if n := sum(t, cm, "response_total", `direction="outbound"`, `tls="true"`, `server_id="`+id("server")+`"`, `classification="success"`); n == 0 {
		t.Errorf("the client's proxy saw no mTLS responses from %s", id("server"))
	}
	// ... and the control plane upgraded (its pods replaced).
	time.Sleep(5 * time.Second)
	helm(t, "upgrade", "weft-control-plane", "../../charts/weft-control-plane", "-n", "linkerd", "--reuse-values",
		"--set", "controllerLogLevel=debug", "--wait", "--timeout", "3m")
	waitControlPlane(t)

	if err := tryKubectl(t, "-n", ns, "wait", "job/client", "--for=condition=Complete", "--timeout=180s"); err != nil {
		t.Fatalf("the client's job did not complete (a request failed?): %v\n%s", err, tryOutput(t, "-n", ns, "logs", "job/client", "-c", "client", "--tail", "20"))
	}
	logs := kubectl(t, "", "-n", ns, "logs", "job/client", "-c", "client")
	hosts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "host=server-") {
			hosts[f[0]]++
		}
	}
	total := 0
	for _, n := range hosts {
		total += n
	}
	if total != requests || len(hosts) != 3 {
		t.Errorf("%d answers over %d replicas (%v), want %d over 3", total, len(hosts), hosts, requests)
	}
	// Peak-EWMA sends less to a replica that answered slower for a while;
	// every replica must still take a share.
	t.Logf("requests per replica: %v", hosts)
	for h, n := range hosts {
		if n < requests/30 {
			t.Errorf("replica %s served only %d of %d", h, n, requests)
			// For the next look: what the client's proxy says of that
			// replica (ejections are logged, latency shows in its metrics).
			// (The client's metrics as read mid-run: its pod has completed.)
			pod := strings.TrimPrefix(h, "host=")
			for _, line := range strings.Split(cm, "\n") {
				if strings.Contains(line, pod) && !strings.HasPrefix(line, "#") {
					t.Logf("client proxy metric: %s", line)
				}
			}
			t.Logf("client proxy log:\n%s", tryOutput(t, "-n", ns, "logs", clientPod, "-c", "linkerd-proxy", "--tail", "60"))
		}
	}
	// The servers' side: every request over mTLS from the client's identity.
	var inbound float64
	for _, p := range strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=server", "-o", "name")) {
		m := kubectl(t, "", "get", "--raw", "/api/v1/namespaces/"+ns+"/"+strings.Replace(p, "pod/", "pods/", 1)+":4191/proxy/metrics")
		inbound += sum(t, m, "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+id("client")+`"`)
	}
	if inbound != requests {
		t.Errorf("the servers' proxies saw %v mTLS requests from %s, want %d", inbound, id("client"), requests)
	}
	if logs := kubectl(t, "", "-n", "linkerd", "logs", "deploy/linkerd-identity"); !strings.Contains(logs, "issuer loaded") {
		t.Errorf("identity did not (re)load the issuer:\n%s", logs)
	}

	// Uninstall leaves nothing labelled for the control plane behind.
	helm(t, "uninstall", "weft-control-plane", "-n", "linkerd", "--wait")
	helm(t, "uninstall", "weft-crds", "-n", "linkerd", "--wait")
	removeNamespace(t, "linkerd")
	uninstalled = true
	for _, kind := range []string{"mutatingwebhookconfigurations", "clusterroles", "clusterrolebindings", "crd"} {
		if out := strings.TrimSpace(kubectl(t, "", "get", kind, "-l", "linkerd.io/control-plane-ns=linkerd", "-o", "name")); out != "" {
			t.Errorf("left behind: %s", out)
		}
	}
}
