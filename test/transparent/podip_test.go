package transparent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/poll"
)

// TestAppBoundToPodIPOnly: an unmodified app that listens only on its pod
// IP (HTTP and a TCP echo), behind linkerd-init's rules. The inbound proxy
// finds it there after loopback refuses, without looping back into itself,
// and the app sees the client's IP in the forwarding headers.
func TestAppBoundToPodIPOnly(t *testing.T) {
	bin := setup(t, []string{"ip", "iptables-legacy-restore", "setpriv", "curl"}, "./cmd/weft-proxy", "./test/testapp")
	client, server := meshedPair(t, bin, "p", "")
	background(t, server, "app.log", bin+"/testapp", "-http", serverIP+":8080", "-tcp-echo", serverIP+":9000")
	for _, ns := range []string{client, server} {
		poll.Until(t, 15*time.Second, "proxy ready in "+ns, func() bool {
			out, err := inNS(ns, "curl", "-sf", "--max-time", "2", "http://127.0.0.1:4191/ready")
			return err == nil && strings.Contains(out, "ready")
		})
	}
	poll.Until(t, 15*time.Second, "the app on its pod IP", func() bool {
		_, err := inNS(server, "curl", "-sf", "--max-time", "2", "http://"+serverIP+":8080/")
		return err == nil
	})
	if _, err := inNS(server, "curl", "-sf", "--max-time", "2", "http://127.0.0.1:8080/"); err == nil {
		t.Fatal("the app answers on loopback; the test needs it bound to the pod IP only")
	}

	for i := range 10 {
		out, err := inNS(client, "curl", "-sS", "--max-time", "5", "-H", "X-Forwarded-For: 203.0.113.9", fmt.Sprintf("http://%s:8080/pod-ip-%d", serverIP, i))
		if err != nil || !strings.Contains(out, fmt.Sprintf("path=/pod-ip-%d ", i)) {
			t.Fatalf("request %d: %v: %s", i, err, out)
		}
		// The app's peer is the proxy, dialing from the pod IP itself.
		if !strings.Contains(out, "remote="+serverIP+":") {
			t.Errorf("request %d: the app saw %q; want the inbound proxy's connection from the pod IP", i, out)
		}
		if want := `forwarded="for=` + clientIP + `" xff="203.0.113.9, ` + clientIP + `"`; !strings.Contains(out, want) {
			t.Errorf("request %d: the app saw %q; want %s", i, out, want)
		}
	}
	if got := metric(t, server, "request_total", `direction="inbound"`, `target_addr="127.0.0.1:8080"`); got != 10 {
		t.Errorf("server proxy inbound request_total = %v, want 10", got)
	}

	out, err := inNS(client, bin+"/testapp", "-tcp-send", serverIP+":9000", "-msg", "\x01\x02pod-ip")
	if err != nil || !strings.Contains(out, "echo:\x01\x02pod-ip") {
		t.Fatalf("opaque TCP to the pod IP: %v: %q", err, out)
	}
}
