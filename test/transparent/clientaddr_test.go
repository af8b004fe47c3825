package transparent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/policyroute"
	"github.com/weftmesh/weft/internal/poll"
)

// TestClientAddressPreserved: with Weft's client-address rules in the
// server's namespace and its proxy told to keep the client's address
// (with CAP_NET_ADMIN), the unmodified app sees the client's IP as its
// peer, for HTTP and for opaque TCP; removing the rules leaves nothing
// behind.
func TestClientAddressPreserved(t *testing.T) {
	bin := setup(t, []string{"ip", "iptables-legacy-restore", "setpriv", "curl"}, "./cmd/weft-proxy", "./test/testapp")
	client, server := meshedPair(t, bin, "c", "+net_admin", "--preserve-client-address")
	inServer := func(ctx context.Context, name string, args []string, stdin string) (string, error) {
		return iptables.ExecRunner(ctx, "ip", append([]string{"netns", "exec", server, name}, args...), stdin)
	}
	ipt := iptables.DefaultConfig()
	ipt.IPv6 = true
	routes, err := policyroute.InNamespace(server)
	if err != nil {
		t.Fatal(err)
	}
	defer routes.Close()
	for range 2 { // idempotent
		if _, err := iptables.ApplyClientAddr(context.Background(), ipt, inServer); err != nil {
			t.Fatalf("client-address rules: %v", err)
		}
		if _, err := routes.Apply(true); err != nil {
			t.Fatalf("client-address route: %v", err)
		}
	}
	if out, _ := inNS(server, "iptables-legacy-save", "-t", "mangle"); strings.Count(out, "-j "+iptables.ClientAddrChain) != 1 {
		t.Fatalf("want one jump to %s after applying twice:\n%s", iptables.ClientAddrChain, out)
	}
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
	for i := range 10 {
		out, err := inNS(client, "curl", "-sS", "--max-time", "5", fmt.Sprintf("http://%s:8080/kept-%d", serverIP, i))
		if err != nil || !strings.Contains(out, fmt.Sprintf("path=/kept-%d ", i)) {
			t.Fatalf("request %d: %v: %s", i, err, out)
		}
		if !strings.Contains(out, "remote="+clientIP+":") {
			t.Fatalf("request %d: the app saw %q; want the client's address %s", i, out, clientIP)
		}
	}
	for i := range 5 {
		out, err := inNS(client, "curl", "-sS", "-g", "--max-time", "5", fmt.Sprintf("http://[%s]:8080/kept6-%d", serverIP6, i))
		if err != nil || !strings.Contains(out, "remote=["+clientIP6+"]:") {
			t.Fatalf("IPv6 request %d: %v: the app saw %q; want the client's address %s", i, err, out, clientIP6)
		}
	}
	out, err := inNS(client, bin+"/testapp", "-tcp-send", serverIP+":9000", "-msg", "\x01\x02kept")
	if err != nil || !strings.Contains(out, "echo:\x01\x02kept") {
		t.Fatalf("opaque TCP with the client address kept: %v: %q", err, out)
	}

	if err := iptables.RemoveClientAddr(context.Background(), ipt, inServer); err != nil {
		t.Fatalf("removing the rules: %v", err)
	}
	if err := routes.Remove(true); err != nil {
		t.Fatalf("removing the route: %v", err)
	}
	for _, fam := range []string{"-4", "-6"} {
		if out, _ := inNS(server, "ip", fam, "route", "show", "table", fmt.Sprint(iptables.ClientAddrTable)); strings.TrimSpace(out) != "" {
			t.Errorf("ip %s: table %d still has routes after removal: %s", fam, iptables.ClientAddrTable, out)
		}
		if out, _ := inNS(server, "ip", fam, "rule", "show"); strings.Contains(out, fmt.Sprint(iptables.ClientAddrTable)) {
			t.Errorf("ip %s: a rule to table %d is left after removal: %s", fam, iptables.ClientAddrTable, out)
		}
	}
}
