package policyroute

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestApplyAndRemoveInNetworkNamespace writes the rule and the route over
// netlink, twice, in a network namespace made for the test, reads them
// back with ip(8) and removes them.
func TestDescribe(t *testing.T) {
	got := Describe(false)
	want := "ip -4 rule add fwmark 0x5746 lookup 5746 priority 5746\nip -4 route add local default dev lo table 5746\n"
	if got != want {
		t.Errorf("Describe(false) = %q, want %q", got, want)
	}
	if n := strings.Count(Describe(true), "\n"); n != 4 {
		t.Errorf("Describe(true) has %d lines, want 4", n)
	}
}

func TestApplyAndRemoveInNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) not installed (apt-get install iproute2); the test reads the result with it")
	}
	ns := fmt.Sprintf("weft-pr-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil { // as in a pod
		t.Fatalf("lo up: %v: %s", err, out)
	}
	show := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	r, err := InNamespace(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	first, err := r.Apply(true)
	if err != nil {
		t.Fatalf("first apply: %v", err)
	}
	wantFirst := "ip -4 rule add fwmark 0x5746 lookup 5746 priority 5746\n" +
		"ip -4 route add local default dev lo table 5746\n" +
		"ip -6 rule add fwmark 0x5746 lookup 5746 priority 5746\n" +
		"ip -6 route add local default dev lo table 5746\n"
	if first != wantFirst {
		t.Errorf("first apply did:\n%s\nwant:\n%s", first, wantFirst)
	}
	second, err := r.Apply(true)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if second != "" {
		t.Errorf("second apply added again:\n%s", second)
	}

	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-4", "rule", "show"}, "5746:\tfrom all fwmark 0x5746 lookup 5746"},
		{[]string{"-6", "rule", "show"}, "5746:\tfrom all fwmark 0x5746 lookup 5746"},
		{[]string{"-4", "route", "show", "table", "5746"}, "local default dev lo scope host"},
		{[]string{"-6", "route", "show", "table", "5746"}, "local default dev lo"},
	}
	for _, tt := range tests {
		got := show(tt.args...)
		if n := strings.Count(got, tt.want); n != 1 {
			t.Errorf("ip %s: %q appears %d times, want once:\n%s", strings.Join(tt.args, " "), tt.want, n, got)
		}
	}

	for range 2 { // removing twice is fine
		if err := r.Remove(true); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	for _, tt := range tests {
		if got := show(tt.args...); strings.Contains(got, "5746") {
			t.Errorf("after removal, ip %s still shows table 5746:\n%s", strings.Join(tt.args, " "), got)
		}
	}
}
