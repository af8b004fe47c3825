//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Two meshed servers that log each request's peer address: one with Weft's
// config.weft.io/preserve-client-address, one without. The suite's own
// testapp image (it has -log-requests).
var clientAddrApp = yamlDocs(meshedNamespace,
	testApp{Name: "kept", Replicas: 1, Image: "%[2]s", Annotations: `config.weft.io/preserve-client-address: "true"`,
		Args: `"-http", "0.0.0.0:8080", "-log-requests"`}.yaml(),
	testService{Name: "kept"}.yaml(),
	testApp{Name: "plain", Replicas: 1, Image: "%[2]s", Args: `"-http", "0.0.0.0:8080", "-log-requests"`}.yaml(),
	testService{Name: "plain"}.yaml())

// TestClientAddressPreserved: with Weft's opt-in the injector sets up the
// pod (linkerd-init writes the mangle rules and, over netlink, the policy
// route in the pod's network namespace; the proxy gets NET_ADMIN), and the
// unmodified server app logs the client pod's IP as its peer; without it
// the app sees 127.0.0.1 and the forwarding headers name the client. mTLS
// is used between the pods either way. The rules go with the pod: its
// network namespace (found on this single-node cluster's host by the pod
// IP) disappears when the pod is deleted.
func TestClientAddressPreserved(t *testing.T) {
	installControlPlane(t)
	ns := fmt.Sprintf("clientaddr-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(clientAddrApp, ns, clientImage), "apply", "-f", "-")
	t.Cleanup(func() { tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false") })
	for _, d := range []string{"kept", "plain"} {
		kubectl(t, "", "-n", ns, "rollout", "status", "deploy/"+d, "--timeout=120s")
	}
	keptPod := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", "-l", "app=kept", "-o", "jsonpath={.items[0].metadata.name}"))
	keptIP := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", keptPod, "-o", "jsonpath={.status.podIP}"))
	if args := tryOutput(t, "-n", ns, "get", "pod", keptPod, "-o", "jsonpath={.spec.initContainers[0].args}"); !strings.Contains(args, "--preserve-client-address") {
		t.Fatalf("linkerd-init of %s lacks --preserve-client-address: %s", keptPod, args)
	}

	// The rules, in the pod's network namespace and not on the host.
	netns := podNetns(t, keptIP)
	inPod := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("in %s: %s: %v: %s", netns, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, check := range []struct{ args []string }{
		{[]string{"ip", "-4", "rule", "show"}},
		{[]string{"ip", "-4", "route", "show", "table", "5746"}},
		{[]string{"iptables-legacy-save", "-t", "mangle"}},
	} {
		t.Logf("%s in the pod:\n%s", strings.Join(check.args, " "), inPod(check.args...))
	}
	if out := inPod("ip", "-4", "rule", "show"); !strings.Contains(out, "fwmark 0x5746 lookup 5746") {
		t.Errorf("no policy rule in the pod's namespace:\n%s", out)
	}
	if out := inPod("ip", "-4", "route", "show", "table", "5746"); !strings.Contains(out, "local default dev lo") {
		t.Errorf("no local route in table 5746:\n%s", out)
	}
	if out := inPod("iptables-legacy-save", "-t", "mangle"); !strings.Contains(out, "-j WEFT_CLIENT_ADDR") || !strings.Contains(out, "CONNMARK --restore-mark") {
		t.Errorf("no client-address mangle rules:\n%s", out)
	}
	if out, _ := exec.Command("ip", "rule", "show").CombinedOutput(); strings.Contains(string(out), "5746") {
		t.Errorf("the host's own namespace has the rule:\n%s", out)
	}

	const n = 10
	for _, job := range []string{"kept", "plain"} {
		kubectl(t, fmt.Sprintf(routeClient, ns, "to-"+job, clientImage, n, "0s", "", job), "apply", "-f", "-")
	}
	for _, job := range []string{"kept", "plain"} {
		awaitClient(t, ns, "to-"+job)
	}
	clientIP := func(job string) string {
		return strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", "-l", "job-name="+job, "-o", "jsonpath={.items[0].status.podIP}"))
	}

	// With the opt-in: the app's own log names the client pod.
	keptClient := clientIP("to-kept")
	appLog := kubectl(t, "", "-n", ns, "logs", keptPod, "-c", "server")
	if got := strings.Count(appLog, "request remote="+keptClient+":"); got != n {
		t.Errorf("the app logged the client's IP %s for %d of %d requests:\n%s\n%s", keptClient, got, n, appLog,
			tryOutput(t, "-n", ns, "logs", keptPod, "-c", "linkerd-proxy", "--tail", "30"))
	}
	if strings.Contains(appLog, "remote=127.0.0.1:") {
		t.Errorf("with the opt-in the app still saw 127.0.0.1:\n%s", appLog)
	}
	// Without it: 127.0.0.1, and the client's IP in the headers.
	plainClient := clientIP("to-plain")
	plainPod := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", "-l", "app=plain", "-o", "jsonpath={.items[0].metadata.name}"))
	plainLog := kubectl(t, "", "-n", ns, "logs", plainPod, "-c", "server")
	if got := strings.Count(plainLog, "request remote=127.0.0.1:"); got != n {
		t.Errorf("without the opt-in, the app saw 127.0.0.1 for %d of %d requests:\n%s", got, n, plainLog)
	}
	answers := kubectl(t, "", "-n", ns, "logs", "job/to-plain", "-c", "client")
	if want := fmt.Sprintf(`forwarded="for=%s" xff="%s"`, plainClient, plainClient); strings.Count(answers, want) != n {
		t.Errorf("want every answer to show %s:\n%s", want, answers)
	}
	t.Logf("kept: the app saw %s (the client pod) %d times; plain: 127.0.0.1 %d times, headers naming %s",
		keptClient, strings.Count(appLog, "remote="+keptClient+":"), strings.Count(plainLog, "remote=127.0.0.1:"), plainClient)

	// mTLS between the pods, with and without the opt-in.
	clientID := "client." + ns + ".serviceaccount.identity.linkerd.cluster.local"
	for _, pod := range []string{keptPod, plainPod} {
		m := proxyMetrics(t, ns, pod)
		if got := sum(t, m, "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+clientID+`"`); got < n {
			t.Errorf("%s: %g inbound requests over mTLS from %s, want at least %d", pod, got, clientID, n)
		}
	}

	// The rules go with the pod's network namespace.
	kubectl(t, "", "-n", ns, "delete", "deploy/kept", "--wait=true")
	kubectl(t, "", "-n", ns, "wait", "pod/"+keptPod, "--for=delete", "--timeout=90s")
	deadline := time.Now().Add(60 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(time.Second) {
		if _, err := os.Stat(filepath.Join("/var/run/netns", netns)); os.IsNotExist(err) {
			break
		}
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", netns)); !os.IsNotExist(err) {
		t.Fatalf("the pod's network namespace %s is still there 60s after the pod went: %v", netns, err)
	}
	for _, other := range netnsNames(t) {
		if out, _ := exec.Command("ip", "-n", other, "rule", "show").CombinedOutput(); strings.Contains(string(out), "5746") &&
			strings.Contains(ipAddrs(other), keptIP+"/") {
			t.Errorf("namespace %s still has %s and the rule:\n%s", other, keptIP, out)
		}
	}
	t.Logf("the pod's network namespace %s went with the pod, and its rules with it", netns)
}

// netnsNames are the named network namespaces on this host (the CNI
// plugin's cni-*, one per pod sandbox).
func netnsNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		t.Fatalf("the host's network namespaces: %v (the e2e suite runs on the single node)", err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func ipAddrs(netns string) string {
	out, _ := exec.Command("ip", "-n", netns, "-4", "addr", "show").CombinedOutput()
	return string(out)
}

// podNetns is the name of the network namespace that holds a pod's IP.
func podNetns(t *testing.T, ip string) string {
	t.Helper()
	for _, name := range netnsNames(t) {
		if strings.Contains(ipAddrs(name), "inet "+ip+"/") {
			return name
		}
	}
	t.Fatalf("no network namespace on this host has %s", ip)
	return ""
}
