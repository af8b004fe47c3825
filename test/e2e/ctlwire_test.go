//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ctlWireApp: a meshed namespace with a server behind a Service; the
// meshed client is applied while the capture runs.
var ctlWireApp = yamlDocs(
	testNamespace{}.yaml(),
	testApp{Name: "server", Replicas: 1, Image: "%[2]s", Ports: "{name: http, containerPort: 8080}"}.yaml(),
	testService{Name: "server", Ports: "{name: http, port: 8080, targetPort: 8080}"}.yaml())

var ctlWireClient = testClient{Name: "client"}.yaml()

// TestControlPlaneMTLSOnTheWire proves from outside the processes that a
// proxy reaches the destination service (8086) and the policy controller
// (8090) over mTLS: a meshed pod starts while tcpdump captures the pods'
// bridge, sends a request through its proxy (discovery and routes), and
// every connection between it and the linkerd-destination pod is TLS from
// the first byte (a ClientHello naming the controller's identity) to the
// last, with application data both ways and no HTTP/2 preface in clear.
func TestControlPlaneMTLSOnTheWire(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump captures the pods' bridge: apt-get install tcpdump")
	}
	if os.Geteuid() != 0 {
		t.Fatal("capturing on the pods' bridge needs root")
	}
	begin := time.Now()
	installControlPlane(t)
	t.Logf("control plane installed in %v", time.Since(begin).Round(time.Second))
	dstPod := strings.TrimSpace(kubectl(t, "", "-n", "linkerd", "get", "pods", "-l", "linkerd.io/control-plane-component=destination",
		"-o", "jsonpath={.items[0].metadata.name}"))
	podIP := func(ns, pod string) netip.Addr {
		s := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"))
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Fatalf("pod %s/%s IP %q: %v", ns, pod, s, err)
		}
		return a
	}
	dstIP := podIP("linkerd", dstPod)
	const dstID = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local"

	ns := fmt.Sprintf("ctlwire-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(ctlWireApp, ns, clientImage), "apply", "-f", "-")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- pods:\n%s", tryOutput(t, "-n", ns, "get", "pods", "-o", "wide"))
			t.Logf("--- client proxy logs:\n%s", tryOutput(t, "-n", ns, "logs", "client", "-c", "linkerd-proxy", "--tail", "40"))
			for _, c := range []string{"destination", "policy"} {
				t.Logf("--- %s logs:\n%s", c, tryOutput(t, "-n", "linkerd", "logs", "deploy/linkerd-destination", "-c", c, "--tail", "30"))
			}
		}
		tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")

	var clientIP netip.Addr
	pkts, pcap := captureAround(t, "control-plane", func() {
		kubectl(t, fmt.Sprintf(ctlWireClient, ns, clientImage), "apply", "-f", "-")
		kubectl(t, "", "-n", ns, "wait", "pod/client", "--for=condition=Ready", "--timeout=45s")
		clientIP = podIP(ns, "client")
		// Through the proxy: the destination service resolves the Service,
		// the policy controller sends its routes. Bounded retries while
		// kube-proxy and discovery catch up.
		for attempt := 1; ; attempt++ {
			out, err := runKubectl(t, "", "-n", ns, "exec", "client", "-c", "client", "--", "/testapp", "-get", "http://server:8080/ctl", "-n", "1")
			if err == nil && strings.Contains(out, "path=/ctl") {
				break
			}
			if attempt == 10 {
				t.Errorf("the meshed client could not reach the server: %v\n%s", err, out)
				break
			}
			time.Sleep(time.Second)
		}
	})
	t.Logf("client %s, linkerd-destination %s (%s); %d packets captured", clientIP, dstIP, dstPod, len(pkts))

	ports := map[uint16]int{}
	for _, c := range connsBetween(pkts, clientIP, dstIP) {
		if c.fromSYN {
			ports[c.server.Port()]++
		}
		if bytes.Contains(c.up, []byte("PRI * HTTP/2.0")) {
			t.Errorf("%s -> %s: the plaintext HTTP/2 preface crossed the bridge (%s)", c.client, c.server, pcap)
		}
	}
	for _, port := range []uint16{8086, 8090} {
		if ports[port] == 0 {
			t.Errorf("no connection from the proxy to linkerd-destination:%d opened during the capture (opened: %v; %s)", port, ports, pcap)
		}
	}
	summary, problems := wireTLS(pkts, clientIP, dstIP, dstID)
	t.Logf("connections between the proxy and linkerd-destination: %s", summary)
	for _, p := range problems {
		t.Errorf("on the wire: %s (%s)", p, pcap)
	}
	// No plaintext preface anywhere from the client pod's address.
	if flows, n := flowsContaining(pkts, "PRI * HTTP/2.0"); n > 0 {
		for f := range flows {
			if strings.HasPrefix(f, clientIP.String()+":") {
				t.Errorf("plaintext HTTP/2 preface from the client pod: %s", describeFlows(flows))
				break
			}
		}
	}
	t.Logf("total %v", time.Since(begin).Round(time.Second))
}
