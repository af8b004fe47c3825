package iptables

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/golden"
)

func TestRulesGolden(t *testing.T) {
	skip := DefaultConfig()
	skip.IgnoreInboundPorts = append(skip.IgnoreInboundPorts, "25", "8000-8010")
	skip.IgnoreOutboundPorts = []string{"3306", "443", "9000:9100"}
	skip.SkipSubnets = []string{"198.19.0.0/16", "198.18.5.7/32"}
	skip.ProxyGID = 2102
	tests := []struct {
		name string
		cfg  Config
		jump bool
	}{
		{"default.rules", DefaultConfig(), true},
		{"default-no-jumps.rules", DefaultConfig(), false},
		{"skips.rules", skip, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden.Check(t, tt.name, []byte(Rules(tt.cfg, tt.jump))) })
	}
}

func TestMultiportChunks(t *testing.T) {
	c := DefaultConfig()
	for p := 5000; p < 5020; p++ {
		c.IgnoreOutboundPorts = append(c.IgnoreOutboundPorts, fmt.Sprint(p))
	}
	rules := Rules(c, true)
	if n := strings.Count(rules, "-A PROXY_INIT_OUTPUT -p tcp -m multiport"); n != 2 {
		t.Errorf("20 ports in %d multiport rules, want 2 (15 per rule)", n)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"default", func(*Config) {}, ""},
		{"bad mode", func(c *Config) { c.Mode = "ebpf" }, `mode "ebpf"`},
		{"bad port", func(c *Config) { c.IgnoreOutboundPorts = []string{"70000"} }, `port "70000"`},
		{"backwards range", func(c *Config) { c.IgnoreInboundPorts = []string{"9-3"} }, `range "9-3"`},
		{"bad subnet", func(c *Config) { c.SkipSubnets = []string{"198.19.0.0"} }, `subnet "198.19.0.0"`},
		{"bad inbound port", func(c *Config) { c.InboundPort = 0 }, "inbound port 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// fakeTables is an in-memory iptables-save/restore that records what it ran.
type fakeTables struct {
	nat  string
	cmds []string
}

func (f *fakeTables) run(_ context.Context, name string, args []string, stdin string) (string, error) {
	f.cmds = append(f.cmds, name+" "+strings.Join(args, " "))
	if strings.HasSuffix(name, "-save") {
		return f.nat, nil
	}
	f.nat += stdin
	return "", nil
}

func TestApplyAddsJumpsOnce(t *testing.T) {
	f := &fakeTables{nat: "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"}
	c := DefaultConfig()
	c.IPv6 = true
	c.SkipSubnets = []string{"198.19.0.0/16", "fd00::/8"}
	first, err := Apply(context.Background(), c, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first, "-A PREROUTING") || !strings.Contains(first, "# ip6tables-legacy-restore") {
		t.Errorf("first apply lacks jumps or IPv6:\n%s", first)
	}
	if strings.Contains(first[:strings.Index(first, "# ip6tables")], "fd00::/8") {
		t.Error("IPv6 subnet written to the IPv4 table")
	}
	second, err := Apply(context.Background(), c, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(second, "-A PREROUTING") || strings.Contains(second, "-A OUTPUT") {
		t.Errorf("second apply re-added jump rules:\n%s", second)
	}
	want := []string{"iptables-legacy-save -t nat", "iptables-legacy-restore --noflush", "ip6tables-legacy-save -t nat", "ip6tables-legacy-restore --noflush"}
	if got := f.cmds[:4]; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

// TestApplyInNetworkNamespace applies the rules for real, twice, in a
// network namespace made for the test.
func TestApplyInNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	for _, tool := range []string{"ip", "iptables-legacy-restore", "iptables-legacy-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install iptables iproute2)", tool)
		}
	}
	ns := fmt.Sprintf("weft-ipt-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inNS := func(ctx context.Context, name string, args []string, stdin string) (string, error) {
		return ExecRunner(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...), stdin)
	}
	c := DefaultConfig()
	c.IgnoreOutboundPorts = []string{"443"}
	for range 2 {
		if _, err := Apply(context.Background(), c, inNS); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := inNS(context.Background(), "iptables-legacy-save", []string{"-t", "nat"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"-A PREROUTING -m comment --comment \"proxy-init/install-proxy-init-prerouting\" -j PROXY_INIT_REDIRECT",
		"-A OUTPUT -m comment --comment \"proxy-init/install-proxy-init-output\" -j PROXY_INIT_OUTPUT",
		"-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191,4567,4568",
		"-A PROXY_INIT_REDIRECT -p tcp -m comment --comment \"proxy-init/redirect-all-incoming-to-proxy-port\" -j REDIRECT --to-ports 4143",
		"-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102",
		"-A PROXY_INIT_OUTPUT -o lo",
		"-A PROXY_INIT_OUTPUT -p tcp -m multiport --dports 443",
		"-j REDIRECT --to-ports 4140",
	} {
		if n := strings.Count(saved, want); n != 1 {
			t.Errorf("%q appears %d times after two applies, want once\n%s", want, n, saved)
		}
	}
}
