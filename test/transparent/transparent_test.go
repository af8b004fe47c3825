package transparent

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/poll"
	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/promtext"
)

const (
	clientIP  = "198.18.250.1"
	serverIP  = "198.18.250.2"
	clientIP6 = "fd57:5746:0:1::1"
	serverIP6 = "fd57:5746:0:1::2"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command inside a namespace and returns its output.
func inNS(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// background starts a process in a namespace and stops it by pid at
// cleanup (proctest: its log shown if the test fails).
func background(t *testing.T, ns, logName string, args ...string) {
	t.Helper()
	proctest.Start(t, logName, nil, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

func metric(t *testing.T, ns, name string, labels ...string) float64 {
	t.Helper()
	out, err := inNS(ns, "curl", "-s", "--max-time", "5", "http://127.0.0.1:4191/metrics")
	if err != nil {
		t.Fatalf("metrics in %s: %v", ns, err)
	}
	v, err := promtext.Sum(out, name, labels...)
	if err != nil {
		t.Fatalf("metrics in %s: %v", ns, err)
	}
	return v
}

// setup skips unless root with the tools, and builds pkgs into a
// directory the proxy's UID can read.
func setup(t *testing.T, tools []string, pkgs ...string) (bin string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	bin = t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	os.Chmod(bin, 0o755) // the proxy runs as UID 2102
	return bin
}

func TestUnmodifiedAppsThroughBothProxies(t *testing.T) {
	bin := setup(t, []string{"ip", "iptables-legacy-restore", "setpriv", "curl"}, "./cmd/weft-proxy", "./test/testapp")

	client, server := meshedPair(t, bin, "", "")
	background(t, server, "app.log", bin+"/testapp", "-http", "0.0.0.0:8080", "-tcp-echo", "0.0.0.0:9000")
	for _, ns := range []string{client, server} {
		poll.Until(t, 15*time.Second, "proxy ready in "+ns, func() bool {
			out, err := inNS(ns, "curl", "-sf", "--max-time", "2", "http://127.0.0.1:4191/ready")
			return err == nil && strings.Contains(out, "ready")
		})
	}
	poll.Until(t, 15*time.Second, "the app", func() bool {
		_, err := inNS(server, "curl", "-sf", "--max-time", "2", "http://127.0.0.1:8080/")
		return err == nil
	})

	// An unmodified client: curl to the server's address. iptables sends it
	// through the client's outbound proxy and the server's inbound proxy.
	for i := range 20 {
		out, err := inNS(client, "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://%s:8080/req-%d", serverIP, i))
		if err != nil || !strings.Contains(out, fmt.Sprintf("path=/req-%d", i)) {
			t.Fatalf("request %d: %v: %s", i, err, out)
		}
		if !strings.Contains(out, "remote=127.0.0.1:") {
			t.Fatalf("the app saw %q; want the inbound proxy's connection from 127.0.0.1", out)
		}
	}
	if got := metric(t, client, "request_total", `direction="outbound"`, `target_addr="`+serverIP+`:8080"`); got != 20 {
		t.Errorf("client proxy outbound request_total = %v, want 20", got)
	}
	if got := metric(t, server, "request_total", `direction="inbound"`, `target_addr="127.0.0.1:8080"`); got != 20 {
		t.Errorf("server proxy inbound request_total = %v, want 20", got)
	}

	// IPv6: the same unmodified client, to the server's IPv6 address; the
	// proxies find the original destination with IP6T_SO_ORIGINAL_DST.
	for i := range 10 {
		out, err := inNS(client, "curl", "-sS", "-g", "--max-time", "5", fmt.Sprintf("http://[%s]:8080/v6-%d", serverIP6, i))
		if err != nil || !strings.Contains(out, fmt.Sprintf("path=/v6-%d", i)) {
			t.Fatalf("IPv6 request %d: %v: %s", i, err, out)
		}
	}
	if got := metric(t, client, "request_total", `direction="outbound"`, `target_addr="[`+serverIP6+`]:8080"`); got != 10 {
		t.Errorf("client proxy outbound IPv6 request_total = %v, want 10", got)
	}
	if got := metric(t, server, "request_total", `direction="inbound"`, `target_addr="127.0.0.1:8080"`); got != 30 {
		t.Errorf("server proxy inbound request_total = %v, want 30 (20 IPv4 + 10 IPv6)", got)
	}

	// Opaque TCP: a non-HTTP client, same path.
	out, err := inNS(client, bin+"/testapp", "-tcp-send", serverIP+":9000", "-msg", "\x01\x02opaque")
	if err != nil || !strings.Contains(out, "echo:\x01\x02opaque") {
		t.Fatalf("opaque TCP: %v: %q", err, out)
	}
	poll.Until(t, 15*time.Second, "tcp metrics", func() bool {
		return metric(t, server, "tcp_open_total", `direction="inbound"`, `target_addr="127.0.0.1:9000"`, `peer="dst"`) >= 1
	})
	if got := metric(t, client, "tcp_open_total", `direction="outbound"`, `target_addr="`+serverIP+`:9000"`, `peer="dst"`); got < 1 {
		t.Errorf("client proxy opened %v outbound TCP connections to :9000, want ≥ 1", got)
	}
}

// TestDualStackAddressesWithoutIPv6: a pod whose network namespace has IPv6
// disabled gets the same dual-stack listen addresses from the injector; the
// proxy serves on IPv4 and says why it does not listen on IPv6.
func TestDualStackAddressesWithoutIPv6(t *testing.T) {
	bin := setup(t, []string{"ip", "setpriv", "curl", "sysctl"}, "./cmd/weft-proxy")
	ns := fmt.Sprintf("weft-t%d-v4", os.Getpid()%100000)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.lo.disable_ipv6=1")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	background(t, ns, "proxy.log", "setpriv", "--reuid=2102", "--regid=2102", "--clear-groups", bin+"/weft-proxy",
		"--outbound-addr", "127.0.0.1:4140,[::1]:4140", "--inbound-addr", "0.0.0.0:4143,[::]:4143")
	poll.Until(t, 15*time.Second, "proxy ready without IPv6", func() bool {
		out, err := inNS(ns, "curl", "-sf", "--max-time", "2", "http://127.0.0.1:4191/ready")
		return err == nil && strings.Contains(out, "ready")
	})
}
