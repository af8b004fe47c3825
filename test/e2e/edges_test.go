//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// An app that listens only on its pod IP (like longhorn-manager before
// seed 000's POD_IP=0.0.0.0 step), meshed with no changes. Its image is the
// suite's own testapp build (it prints the forwarding headers), not the
// cluster's weft.local/testapp:dev, which may predate them.
var podIPApp = yamlDocs(meshedNamespace,
	testApp{Name: "server", Replicas: 1, Image: "%[2]s", PodIP: true, Args: `"-http", "$(POD_IP):8080"`}.yaml(),
	testService{Name: "server"}.yaml())

// TestAppBoundToPodIP: a meshed client's requests reach, through both
// proxies, an app that listens only on its pod IP; the app sees the
// client pod's IP in Forwarded and X-Forwarded-For.
func TestAppBoundToPodIP(t *testing.T) {
	installControlPlane(t)
	ns := fmt.Sprintf("podip-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(podIPApp, ns, clientImage), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
	if c := tryOutput(t, "-n", ns, "get", "pod", "-l", "app=server", "-o", "jsonpath={.items[0].spec.containers[*].name}"); !strings.Contains(c, "linkerd-proxy") {
		t.Fatalf("server not meshed: containers %q", c)
	}
	const n = 20
	// Not runClient: it waits for the pod to be Ready, and 20 requests can
	// be over before that is seen.
	kubectl(t, fmt.Sprintf(routeClient, ns, "podip", clientImage, n, "0s", "", "server"), "apply", "-f", "-")
	awaitClient(t, ns, "podip")
	clientIP := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", "-l", "job-name=podip", "-o", "jsonpath={.items[0].status.podIP}"))
	logs := kubectl(t, "", "-n", ns, "logs", "job/podip", "-c", "client")
	if got := strings.Count(logs, "host=server-"); got != n {
		t.Fatalf("%d answers from the server, want %d:\n%s", got, n, logs)
	}
	if want := fmt.Sprintf(`forwarded="for=%s" xff="%s"`, clientIP, clientIP); strings.Count(logs, want) != n {
		t.Errorf("want every answer to show %s:\n%s", want, logs)
	}
	if !strings.Contains(logs, "client-id=client."+ns+".serviceaccount.identity.linkerd.cluster.local") {
		t.Errorf("the app did not see the client's mTLS identity:\n%s", logs)
	}
}
