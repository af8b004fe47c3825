package transparent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/weftmesh/weft/internal/iptables"
)

// meshedPair makes two network namespaces (client at clientIP, server at
// serverIP, dual-stack) joined by a veth pair, applies linkerd-init's rules
// in both and starts a weft-proxy in each as UID 2102, with extra
// arguments for the server's proxy (serverCaps: ambient capabilities it is
// given, e.g. "+net_admin"). suffix tells apart pairs of one test.
func meshedPair(t *testing.T, bin, suffix, serverCaps string, serverArgs ...string) (client, server string) {
	t.Helper()
	id := fmt.Sprintf("%d%s", os.Getpid()%100000, suffix)
	client, server = "weft-t"+id+"-a", "weft-t"+id+"-b"
	vethA, vethB := "wt"+id+"a", "wt"+id+"b"
	for _, ns := range []string{client, server} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vethA).Run() })
	run(t, "ip", "link", "set", vethA, "netns", client)
	run(t, "ip", "link", "set", vethB, "netns", server)
	run(t, "ip", "-n", client, "addr", "add", clientIP+"/24", "dev", vethA)
	run(t, "ip", "-n", server, "addr", "add", serverIP+"/24", "dev", vethB)
	run(t, "ip", "-n", client, "addr", "add", clientIP6+"/64", "dev", vethA, "nodad")
	run(t, "ip", "-n", server, "addr", "add", serverIP6+"/64", "dev", vethB, "nodad")
	run(t, "ip", "-n", client, "link", "set", vethA, "up")
	run(t, "ip", "-n", server, "link", "set", vethB, "up")
	ipt := iptables.DefaultConfig()
	ipt.IPv6 = true

	for _, ns := range []string{client, server} {
		_, err := iptables.Apply(context.Background(), ipt,
			func(ctx context.Context, name string, args []string, stdin string) (string, error) {
				return iptables.ExecRunner(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...), stdin)
			})
		if err != nil {
			t.Fatalf("proxy-init rules in %s: %v", ns, err)
		}
		// The listen addresses the injector gives a dual-stack pod: one
		// socket per family (the IPv6 ones IPv6-only).
		args := []string{"setpriv", "--reuid=2102", "--regid=2102", "--clear-groups"}
		if ns == server && serverCaps != "" {
			args = append(args, "--inh-caps", serverCaps, "--ambient-caps", serverCaps)
		}
		args = append(args, bin+"/weft-proxy", "--outbound-addr", "127.0.0.1:4140,[::1]:4140", "--inbound-addr", "0.0.0.0:4143,[::]:4143")
		if ns == server {
			args = append(args, serverArgs...)
		}
		background(t, ns, ns+"-proxy.log", args...)
	}
	return client, server
}
