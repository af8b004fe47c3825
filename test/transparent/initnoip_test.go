package transparent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyInitClientAddressWithoutIP runs the weft-proxy-init binary with
// --preserve-client-address in a fresh network namespace with a PATH that
// has the iptables tools and no ip(8), as in the init image: the nat and
// mangle rules, the policy rule and the local route are all written (the
// last two over netlink), and a second run adds nothing.
func TestProxyInitClientAddressWithoutIP(t *testing.T) {
	bin := setup(t, []string{"ip", "iptables-legacy-restore", "iptables-legacy-save", "ip6tables-legacy-restore", "ip6tables-legacy-save"}, "./cmd/weft-proxy-init")
	tools := t.TempDir()
	for _, tool := range []string{"iptables-legacy-restore", "iptables-legacy-save", "ip6tables-legacy-restore", "ip6tables-legacy-save"} {
		path, _ := exec.LookPath(tool)
		if err := os.Symlink(path, filepath.Join(tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	ns := fmt.Sprintf("weft-t%d-init", os.Getpid()%100000)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	initRun := func() string {
		t.Helper()
		out, err := inNS(ns, "env", "PATH="+tools, bin+"/weft-proxy-init", "--preserve-client-address", "--proxy-gid", "2102")
		if err != nil {
			t.Fatalf("weft-proxy-init: %v\n%s", err, out)
		}
		return out
	}
	if out, err := inNS(ns, "env", "PATH="+tools, "ip", "-V"); err == nil {
		t.Fatalf("ip(8) is reachable on the restricted PATH: %s", out)
	}
	first := initRun()
	for _, want := range []string{"ip -4 rule add fwmark 0x5746 lookup 5746 priority 5746", "ip -6 route add local default dev lo table 5746", "-j WEFT_CLIENT_ADDR"} {
		if !strings.Contains(first, want) {
			t.Errorf("first run did not print %q:\n%s", want, first)
		}
	}
	if second := initRun(); strings.Contains(second, "rule add") || strings.Contains(second, "route add") {
		t.Errorf("second run added the rule or the route again:\n%s", second)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"ip", "-4", "rule", "show"}, "fwmark 0x5746 lookup 5746"},
		{[]string{"ip", "-6", "rule", "show"}, "fwmark 0x5746 lookup 5746"},
		{[]string{"ip", "-4", "route", "show", "table", "5746"}, "local default dev lo"},
		{[]string{"ip", "-6", "route", "show", "table", "5746"}, "local default dev lo"},
		{[]string{"iptables-legacy-save", "-t", "mangle"}, "-A OUTPUT -m comment --comment \"weft/install-client-address\" -j WEFT_CLIENT_ADDR"},
		{[]string{"iptables-legacy-save", "-t", "nat"}, "-m owner --gid-owner 2102"},
	}
	for _, tt := range tests {
		out, err := inNS(ns, tt.args...)
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(tt.args, " "), err)
		}
		if got := strings.Count(out, tt.want); got != 1 {
			t.Errorf("%s: %q appears %d times, want once:\n%s", strings.Join(tt.args, " "), tt.want, got, out)
		}
	}
}
