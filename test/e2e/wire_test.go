//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/detect"
)

// podBridge is the cluster's pod bridge (bridgeName in
// test/cluster/clusterctl/configs.go): every pod-to-pod packet crosses it.
const podBridge = "weft-cni0"

// Capture bounds: packets per capture, and how long tcpdump may run.
const (
	capturePackets = 50000
	captureMax     = 60 * time.Second
)

// wireApp: a meshed namespace with a server that listens as a web app and
// a database would (HTTP on 8080, TCP echo on 5432 and 6379, all declared,
// so the injector marks the default-opaque ones opaque), a Service in front
// of it, a meshed client and an unmeshed one.
var wireApp = yamlDocs(
	testNamespace{SAs: []string{"server", "client"}}.yaml(),
	testApp{Name: "server", Replicas: 1, SA: "server", Image: "%[2]s", Args: `"-http", "0.0.0.0:8080", "-tcp-echo", "0.0.0.0:5432,0.0.0.0:6379"`, Ports: "{name: http, containerPort: 8080}, {name: postgres, containerPort: 5432}, {name: redis, containerPort: 6379}"}.yaml(),
	testService{Name: "server", Ports: "{name: http, port: 8080, targetPort: 8080}, {name: postgres, port: 5432, targetPort: 5432}, {name: redis, port: 6379, targetPort: 6379}"}.yaml(),
	testClient{Name: "client", SA: "client"}.yaml(),
	testClient{Name: "plain", Annotations: "linkerd.io/inject: disabled"}.yaml())

// wireExchange is one exchange with the server through its Service.
type wireExchange struct {
	name string
	port int
	http bool // GET /<marker> (echoed as path=/<marker>); otherwise raw TCP (echo:<marker>)
}

var wireExchanges = []wireExchange{{"http-8080", 8080, true}, {"postgres-5432", 5432, false}, {"redis-6379", 6379, false}}

// TestMTLSOnTheWire proves from outside the proxies that traffic between
// meshed pods is mTLS on every port, HTTP and opaque alike: a random marker
// sent by a meshed client to a meshed server (and echoed back) must never
// cross the pods' bridge in clear, every connection between the two pods
// must be TLS from its first byte to its last, and both proxies must
// record the traffic as mTLS with the peer's identity. The same exchanges
// from an unmeshed pod are the control: there the marker is seen in clear
// and the same checks fail.
func TestMTLSOnTheWire(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump captures the pods' bridge: apt-get install tcpdump")
	}
	if os.Geteuid() != 0 {
		t.Fatal("capturing on the pods' bridge needs root")
	}
	begin := time.Now()
	installControlPlane(t)
	t.Logf("control plane installed in %v", time.Since(begin).Round(time.Second))

	ns := fmt.Sprintf("wire-%d", time.Now().Unix()%100000)
	kubectl(t, fmt.Sprintf(wireApp, ns, clientImage), "apply", "-f", "-")
	server := ""
	t.Cleanup(func() {
		if t.Failed() {
			if os.Getenv("WEFT_E2E_ARTIFACTS") == "" {
				t.Log("the captures go with the test's temporary folders; set WEFT_E2E_ARTIFACTS=<dir> to keep them")
			}
			t.Logf("--- pods:\n%s", tryOutput(t, "-n", ns, "get", "pods", "-o", "wide"))
			for _, p := range []string{server, "client"} {
				if p != "" {
					t.Logf("--- %s proxy logs:\n%s", p, tryOutput(t, "-n", ns, "logs", p, "-c", "linkerd-proxy", "--tail", "30"))
				}
			}
		}
		tryKubectl(t, "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	kubectl(t, "", "-n", ns, "rollout", "status", "deploy/server", "--timeout=120s")
	kubectl(t, "", "-n", ns, "wait", "pod/client", "pod/plain", "--for=condition=Ready", "--timeout=120s")
	server = strings.TrimPrefix(strings.Fields(kubectl(t, "", "-n", ns, "get", "pods", "-l", "app=server", "-o", "name"))[0], "pod/")
	ip := func(pod string) netip.Addr {
		s := strings.TrimSpace(kubectl(t, "", "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"))
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Fatalf("pod %s IP %q: %v", pod, s, err)
		}
		return a
	}
	serverIP, clientIP, plainIP := ip(server), ip("client"), ip("plain")
	t.Logf("pods: server %s, meshed client %s, unmeshed client %s", serverIP, clientIP, plainIP)

	// The injector meshed the server and the client, not plain, and marked
	// the server's declared default-opaque ports opaque.
	for pod, want := range map[string]bool{server: true, "client": true, "plain": false} {
		got := kubectl(t, "", "-n", ns, "get", "pod", pod, "-o", "jsonpath={.spec.containers[*].name}")
		if strings.Contains(got, "linkerd-proxy") != want {
			t.Fatalf("pod %s has containers %q; meshed: want %v", pod, got, want)
		}
	}
	if ann := kubectl(t, "", "-n", ns, "get", "pod", server, "-o", `jsonpath={.metadata.annotations.config\.linkerd\.io/opaque-ports}`); ann != "5432,6379" {
		t.Errorf("the server pod's config.linkerd.io/opaque-ports is %q, want 5432,6379 (its declared default-opaque ports)", ann)
	}

	// Both clients reach every port before anything is measured (kube-proxy
	// and discovery catch up with the new Service), bounded; except the
	// meshed client over HTTP, whose proxy would keep the connection open:
	// measured, it opens one, so the capture sees the whole TLS session.
	for _, pod := range []string{"client", "plain"} {
		for _, ex := range wireExchanges {
			if pod == "client" && ex.http {
				continue
			}
			marker := "warmup-" + newMarker(t)
			deadline := time.Now().Add(60 * time.Second)
			for attempt := 1; ; attempt++ {
				out, err := ex.run(t, ns, pod, marker)
				if err == nil {
					break
				}
				if attempt == 60 || time.Now().After(deadline) {
					t.Fatalf("%s could not reach server:%d in %d attempts: %v\n%s", pod, ex.port, attempt, err, out)
				}
				time.Sleep(time.Second)
			}
		}
	}

	id := func(sa string) string { return sa + "." + ns + ".serviceaccount.identity.linkerd.cluster.local" }
	clientID, serverID := id("client"), id("server")
	var httpOutbound []string // the client proxy's series that grew during the meshed HTTP exchange
	for _, ex := range wireExchanges {
		t.Run("meshed-"+ex.name, func(t *testing.T) {
			marker := newMarker(t)
			cBefore, sBefore := proxySamples(t, ns, "client"), proxySamples(t, ns, server)
			pkts, pcap := captureAround(t, "meshed-"+ex.name, func() {
				if out, err := ex.run(t, ns, "client", marker); err != nil {
					t.Errorf("the meshed exchange on port %d failed: %v\n%s", ex.port, err, out)
				}
			})
			cGrown, sGrown := grown(cBefore, proxySamples(t, ns, "client")), grown(sBefore, proxySamples(t, ns, server))
			if ex.http {
				httpOutbound = cGrown
			}

			if flows, n := flowsContaining(pkts, marker); n > 0 {
				t.Errorf("port %d: the marker crossed the bridge IN CLEAR in %d of %d captured packets: %s (%s)", ex.port, n, len(pkts), describeFlows(flows), pcap)
			}
			summary, problems := wireTLS(pkts, clientIP, serverIP, serverID)
			t.Logf("port %d, connections between the pods: %s", ex.port, summary)
			for _, p := range problems {
				t.Errorf("port %d on the wire: %s (%s)", ex.port, p, pcap)
			}
			for _, p := range outboundProblems(ex, cGrown, serverID) {
				t.Errorf("port %d, client proxy: %s", ex.port, p)
			}
			for _, p := range inboundProblems(ex, sGrown, clientID) {
				t.Errorf("port %d, server proxy: %s", ex.port, p)
			}
		})
	}

	// Part of the fix: outbound HTTP series name the destination workload.
	t.Run("dst-labels", func(t *testing.T) {
		var reqs []string
		for _, s := range httpOutbound {
			if strings.HasPrefix(s, "request_total{") && label(s, "direction") == "outbound" {
				reqs = append(reqs, s)
				if dep, dns := label(s, "dst_deployment"), label(s, "dst_namespace"); dep != "server" || dns != ns {
					t.Errorf("outbound request_total has dst_deployment=%q dst_namespace=%q, want %q and %q: %s", dep, dns, "server", ns, s)
				}
			}
		}
		if len(reqs) == 0 {
			t.Errorf("the client's proxy recorded no outbound request_total during the HTTP exchange (grown: %v)", httpOutbound)
		}
	})

	// The control: the same exchanges from the unmeshed pod. The marker must
	// be seen in clear, and the wire and metrics checks above must fail.
	for _, ex := range wireExchanges {
		t.Run("unmeshed-control-"+ex.name, func(t *testing.T) {
			marker := newMarker(t)
			sBefore := proxySamples(t, ns, server)
			pkts, pcap := captureAround(t, "unmeshed-"+ex.name, func() {
				if out, err := ex.run(t, ns, "plain", marker); err != nil {
					t.Errorf("the unmeshed exchange on port %d failed: %v\n%s", ex.port, err, out)
				}
			})
			sGrown := grown(sBefore, proxySamples(t, ns, server))
			flows, n := flowsContaining(pkts, marker)
			if n == 0 {
				t.Errorf("port %d: the marker sent in clear from the unmeshed pod was not found in the %d captured packets (%s): the capture or the scan is broken", ex.port, len(pkts), pcap)
			} else {
				t.Logf("port %d: as expected, the marker is in clear in %d packets: %s", ex.port, n, describeFlows(flows))
			}
			summary, problems := wireTLS(pkts, plainIP, serverIP, serverID)
			if p := firstContaining(problems, "are not all TLS"); p == "" {
				t.Errorf("port %d: the TLS check did not find the unmeshed pod's plaintext: %s; %v", ex.port, summary, problems)
			} else {
				t.Logf("port %d: as expected, the TLS check fails: %s", ex.port, p)
			}
			problems = inboundProblems(ex, sGrown, clientID)
			if p := firstContaining(problems, `without tls="true"`); p == "" {
				t.Errorf("port %d: the inbound metrics check did not flag the unmeshed pod's traffic: %v (grown: %v)", ex.port, problems, sGrown)
			} else {
				t.Logf("port %d: as expected, the inbound metrics check fails: %s", ex.port, p)
			}
		})
	}
	t.Logf("total %v", time.Since(begin).Round(time.Second))
}

func firstContaining(list []string, s string) string {
	for _, x := range list {
		if strings.Contains(x, s) {
			return x
		}
	}
	return ""
}

func newMarker(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "wire-marker-" + hex.EncodeToString(b)
}

// run sends marker from pod to the server through its Service and checks
// that the answer echoes it.
func (ex wireExchange) run(t *testing.T, ns, pod, marker string) (string, error) {
	args := []string{"-n", ns, "exec", pod, "-c", "client", "--", "/testapp"}
	want := "echo:" + marker
	if ex.http {
		args = append(args, "-get", fmt.Sprintf("http://server:%d/%s", ex.port, marker), "-n", "1")
		want = "path=/" + marker
	} else {
		args = append(args, "-tcp-send", fmt.Sprintf("server:%d", ex.port), "-msg", marker)
	}
	out, err := runKubectl(t, "", args...)
	if err == nil && !strings.Contains(out, want) {
		err = fmt.Errorf("the answer does not echo the marker (want %q)", want)
	}
	return out, err
}

func proxySamples(t *testing.T, ns, pod string) map[string]float64 {
	return samples(t, proxyMetrics(t, ns, pod), "tcp_open_total", "request_total")
}

// captureAround runs tcpdump on the pods' bridge (bounded in packets and
// time, stopped by pid) while fn runs, and returns the packets and the
// pcap's path. The pcap is kept under $WEFT_E2E_ARTIFACTS if set.
func captureAround(t *testing.T, name string, fn func()) ([]packet, string) {
	t.Helper()
	dir := os.Getenv("WEFT_E2E_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(dir, name+".pcap")
	ctx, cancel := context.WithTimeout(context.Background(), captureMax)
	defer cancel()
	// -p is not given: a bridge passes frames between its ports up to
	// tcpdump only in promiscuous mode. --immediate-mode: without it
	// libpcap hands packets over in blocks, and those of the last block are
	// lost when tcpdump is interrupted. -Z root: write into the test's
	// folder without dropping privileges. -B 65536: a 64 MiB capture
	// buffer; in immediate mode each packet takes a snapshot-sized slot of
	// the ring, so the default 2 MiB holds few, and on a busy CI machine
	// tcpdump not scheduled for a moment dropped 25 of 473 packets.
	cmd := exec.CommandContext(ctx, "tcpdump", "-i", podBridge, "-n", "--immediate-mode", "-U", "-s", "0", "-B", "65536",
		"-c", strconv.Itoa(capturePackets), "-Z", "root", "-w", pcap)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	var mu sync.Mutex
	var log strings.Builder
	listening := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { <-drained; cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	select {
	case <-listening:
	case <-drained:
		cmd.Wait()
		t.Fatalf("tcpdump on %s exited before capturing:\n%s", podBridge, log.String())
	case <-time.After(10 * time.Second):
		stop()
		t.Fatalf("tcpdump on %s did not start listening within 10s:\n%s", podBridge, log.String())
	}
	fn()
	time.Sleep(500 * time.Millisecond) // the connections' last segments
	stop()

	mu.Lock()
	stats := log.String()
	mu.Unlock()
	if m := regexp.MustCompile(`(\d+) packets dropped by kernel`).FindStringSubmatch(stats); m == nil || m[1] != "0" {
		t.Errorf("tcpdump dropped packets or printed no statistics: what it missed is unchecked:\n%s", stats)
	}
	pkts, err := readPcap(pcap)
	if err != nil {
		t.Fatalf("reading the capture: %v\n%s", err, stats)
	}
	if len(pkts) >= capturePackets {
		t.Errorf("the capture hit its bound of %d packets: what came after is unchecked", capturePackets)
	}
	return pkts, pcap
}

// wireTLS checks the TCP connections between a client and a server pod in
// a capture: at least one carried data, and each that did is TLS from its
// first byte to its last in both directions, with application data each
// way; one that opened during the capture starts with a ClientHello
// naming the server's identity (SNI). It returns a summary of the
// connections and the problems found.
func wireTLS(pkts []packet, clientIP, serverIP netip.Addr, serverID string) (string, []string) {
	var summary, problems []string
	carrying := 0
	for _, c := range connsBetween(pkts, clientIP, serverIP) {
		if len(c.up) == 0 && len(c.down) == 0 {
			continue
		}
		carrying++
		conn := fmt.Sprintf("%s -> %s", c.client, c.server)
		if !c.fromSYN {
			conn += " (opened before the capture)"
		}
		up, errUp := tlsRecords(c.up)
		down, errDown := tlsRecords(c.down)
		summary = append(summary, fmt.Sprintf("%s: %d bytes up (TLS records by type %v), %d down (%v)", conn, len(c.up), up, len(c.down), down))
		if errUp != nil {
			problems = append(problems, fmt.Sprintf("%s: the client's %d bytes are not all TLS: %v", conn, len(c.up), errUp))
		}
		if errDown != nil {
			problems = append(problems, fmt.Sprintf("%s: the server's %d bytes are not all TLS: %v", conn, len(c.down), errDown))
		}
		if errUp == nil && errDown == nil && (up[23] == 0 || down[23] == 0) {
			problems = append(problems, fmt.Sprintf("%s: no TLS application data both ways (records up %v, down %v)", conn, up, down))
		}
		if c.fromSYN && errUp == nil {
			sni, complete, ok := detect.ParseSNI(c.up)
			summary[len(summary)-1] += fmt.Sprintf(", SNI %q", sni)
			if !complete || !ok || sni != serverID {
				problems = append(problems, fmt.Sprintf("%s: opened during the capture, but its first record is not a ClientHello naming %s (SNI %q)", conn, serverID, sni))
			}
		}
		if c.gaps > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d holes in the captured streams", conn, c.gaps))
		}
	}
	if carrying == 0 {
		problems = append(problems, fmt.Sprintf("no connection between %s and %s carried data during the exchange (not captured?)", clientIP, serverIP))
	}
	return strings.Join(summary, "; "), problems
}

// outboundProblems checks the client proxy's series that grew during an
// exchange: request_total (HTTP) or tcp_open_total toward the server
// (peer="dst"), every one mTLS with the server's identity.
func outboundProblems(ex wireExchange, grown []string, serverID string) []string {
	name := "tcp_open_total"
	if ex.http {
		name = "request_total"
	}
	var seen, bad []string
	for _, s := range grown {
		if !strings.HasPrefix(s, name+"{") || label(s, "direction") != "outbound" || !ex.http && label(s, "peer") != "dst" {
			continue
		}
		seen = append(seen, s)
		if label(s, "tls") != "true" || label(s, "server_id") != serverID {
			bad = append(bad, s)
		}
	}
	var problems []string
	if len(seen) == 0 {
		problems = append(problems, fmt.Sprintf("no outbound %s toward the server grew during the exchange", name))
	}
	if len(bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d outbound %s series without tls=\"true\" server_id=%q:\n\t%s", len(bad), name, serverID, strings.Join(bad, "\n\t")))
	}
	return problems
}

// inboundProblems checks the server proxy's series that grew during an
// exchange: request_total (HTTP) or tcp_open_total, every one mTLS from
// the client's identity, one of them for the exchange's port.
func inboundProblems(ex wireExchange, grown []string, clientID string) []string {
	name := "tcp_open_total"
	if ex.http {
		name = "request_total"
	}
	var seen, bad []string
	port := false
	for _, s := range grown {
		if !strings.HasPrefix(s, name+"{") || label(s, "direction") != "inbound" {
			continue
		}
		seen = append(seen, s)
		port = port || strings.HasSuffix(label(s, "target_addr"), ":"+strconv.Itoa(ex.port))
		if label(s, "tls") != "true" || label(s, "client_id") != clientID {
			bad = append(bad, s)
		}
	}
	var problems []string
	if len(seen) == 0 {
		problems = append(problems, fmt.Sprintf("no inbound %s grew during the exchange", name))
	} else if !port {
		problems = append(problems, fmt.Sprintf("no inbound %s for target_addr port %d grew:\n\t%s", name, ex.port, strings.Join(seen, "\n\t")))
	}
	if len(bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d inbound %s series without tls=\"true\" client_id=%q:\n\t%s", len(bad), name, clientID, strings.Join(bad, "\n\t")))
	}
	return problems
}
