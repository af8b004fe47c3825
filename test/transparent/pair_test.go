package transparent

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/netnspair"
)

// meshedPair makes two network namespaces (client at clientIP, server at
// serverIP, dual-stack) joined by a veth pair (internal/netnspair), applies linkerd-init's rules
// in both and starts a weft-proxy in each as UID 2102, with extra
// arguments for the server's proxy (serverCaps: ambient capabilities it is
// given, e.g. "+net_admin"). suffix tells apart pairs of one test.
func meshedPair(t *testing.T, bin, suffix, serverCaps string, serverArgs ...string) (client, server string) {
	t.Helper()
	pair, err := netnspair.Create(netnspair.Options{Name: fmt.Sprintf("t%d%s", os.Getpid()%100000, suffix),
		ClientIP: clientIP, ServerIP: serverIP, ClientIP6: clientIP6, ServerIP6: serverIP6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	client, server = pair.Client, pair.Server
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
