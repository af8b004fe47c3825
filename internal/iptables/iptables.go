// Package iptables writes the nat rules of Linkerd's proxy-init (the
// linkerd-init container): inbound TCP is redirected to the proxy's inbound
// port and outbound TCP to its outbound port, except the proxy's own traffic,
// loopback, and the ports and subnets configured to skip the proxy. Rules
// are a pure function of the configuration; Apply installs them idempotently
// with iptables-restore, leaving every other chain untouched.
package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/compat"
)

// Chain names, as Linkerd's proxy-init writes them.
const (
	RedirectChain = "PROXY_INIT_REDIRECT"
	OutputChain   = "PROXY_INIT_OUTPUT"
)

// Config is what proxy-init is told.
type Config struct {
	InboundPort         int
	OutboundPort        int
	ProxyUID            int
	ProxyGID            int // -1: no GID rule
	IgnoreInboundPorts  []string
	IgnoreOutboundPorts []string
	SkipSubnets         []string
	Mode                string // "legacy" or "nft"
	IPv6                bool
}

// DefaultConfig is proxy-init's default.
func DefaultConfig() Config {
	ignored := make([]string, 0, len(compat.DefaultIgnoredInboundPorts))
	for _, p := range compat.DefaultIgnoredInboundPorts {
		ignored = append(ignored, strconv.Itoa(p))
	}
	return Config{
		InboundPort: compat.InboundPort, OutboundPort: compat.OutboundPort,
		ProxyUID: compat.ProxyUID, ProxyGID: -1,
		IgnoreInboundPorts: ignored, Mode: "legacy",
	}
}

// Validate names the first bad value.
func (c Config) Validate() error {
	for name, p := range map[string]int{"inbound port": c.InboundPort, "outbound port": c.OutboundPort} {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%s %d: want 1-65535", name, p)
		}
	}
	if c.ProxyUID < 0 {
		return fmt.Errorf("proxy UID %d: must not be negative", c.ProxyUID)
	}
	if c.Mode != "legacy" && c.Mode != "nft" {
		return fmt.Errorf("iptables mode %q: want legacy or nft", c.Mode)
	}
	for _, list := range [][]string{c.IgnoreInboundPorts, c.IgnoreOutboundPorts} {
		for _, p := range list {
			if _, err := portSpec(p); err != nil {
				return err
			}
		}
	}
	for _, s := range c.SkipSubnets {
		if _, err := netip.ParsePrefix(strings.TrimSpace(s)); err != nil {
			return fmt.Errorf("skip subnet %q: not a CIDR", s)
		}
	}
	return nil
}

// portSpec turns "8080", "8000-8010" or "8000:8010" into iptables syntax.
func portSpec(s string) (string, error) {
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(strings.ReplaceAll(s, "-", ":"), ":")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 || a > 65535 {
		return "", fmt.Errorf("port %q: want 1-65535 or a range like 8000-8010", s)
	}
	if !isRange {
		return lo, nil
	}
	b, err := strconv.Atoi(hi)
	if err != nil || b < a || b > 65535 {
		return "", fmt.Errorf("port range %q: want LOW-HIGH within 1-65535", s)
	}
	return lo + ":" + hi, nil
}

// multiport rules accept at most 15 ports (a range counts as two).
func chunks(specs []string) [][]string {
	var out [][]string
	var cur []string
	n := 0
	for _, s := range specs {
		w := 1
		if strings.Contains(s, ":") {
			w = 2
		}
		if n+w > 15 {
			out, cur, n = append(out, cur), nil, 0
		}
		cur, n = append(cur, s), n+w
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func specs(ports []string) []string {
	var out []string
	for _, p := range ports {
		if s, err := portSpec(p); err == nil && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Rules returns the iptables-restore input for the nat table. With
// withJumps=false the PREROUTING/OUTPUT jump rules are left out (they are
// already installed).
func Rules(c Config, withJumps bool) string {
	var b strings.Builder
	rule := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	rule("*nat")
	rule(":%s - [0:0]", RedirectChain)
	rule(":%s - [0:0]", OutputChain)
	for _, ch := range chunks(specs(c.IgnoreInboundPorts)) {
		ports := strings.Join(ch, ",")
		rule("-A %s -p tcp -m multiport --dports %s -m comment --comment \"proxy-init/ignore-port-%s\" -j RETURN", RedirectChain, ports, ports)
	}
	rule("-A %s -p tcp -m comment --comment \"proxy-init/redirect-all-incoming-to-proxy-port\" -j REDIRECT --to-ports %d", RedirectChain, c.InboundPort)
	if withJumps {
		rule("-A PREROUTING -m comment --comment \"proxy-init/install-proxy-init-prerouting\" -j %s", RedirectChain)
	}
	rule("-A %s -m owner --uid-owner %d -m comment --comment \"proxy-init/ignore-proxy-user-id\" -j RETURN", OutputChain, c.ProxyUID)
	if c.ProxyGID >= 0 {
		rule("-A %s -m owner --gid-owner %d -m comment --comment \"proxy-init/ignore-proxy-group-id\" -j RETURN", OutputChain, c.ProxyGID)
	}
	rule("-A %s -o lo -m comment --comment \"proxy-init/ignore-loopback\" -j RETURN", OutputChain)
	for _, ch := range chunks(specs(c.IgnoreOutboundPorts)) {
		ports := strings.Join(ch, ",")
		rule("-A %s -p tcp -m multiport --dports %s -m comment --comment \"proxy-init/ignore-port-%s\" -j RETURN", OutputChain, ports, ports)
	}
	for _, s := range c.SkipSubnets {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		rule("-A %s -d %s -m comment --comment \"proxy-init/ignore-subnet-%s\" -j RETURN", OutputChain, p.Masked(), p.Masked())
	}
	rule("-A %s -p tcp -m comment --comment \"proxy-init/redirect-all-outgoing-to-proxy-port\" -j REDIRECT --to-ports %d", OutputChain, c.OutboundPort)
	if withJumps {
		rule("-A OUTPUT -m comment --comment \"proxy-init/install-proxy-init-output\" -j %s", OutputChain)
	}
	rule("COMMIT")
	return b.String()
}

// Runner runs a command with stdin and returns its stdout.
type Runner func(ctx context.Context, name string, args []string, stdin string) (string, error)

// ExecRunner runs commands with os/exec.
func ExecRunner(ctx context.Context, name string, args []string, stdin string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

// Apply installs the rules (IPv4, and IPv6 when configured) and returns what
// it wrote. Running it again yields the same ruleset: the proxy-init chains
// are rewritten and the jump rules are added only when missing.
func Apply(ctx context.Context, c Config, run Runner) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	families := []string{"iptables"}
	if c.IPv6 {
		families = append(families, "ip6tables")
	}
	var applied strings.Builder
	for _, fam := range families {
		save, restore := fmt.Sprintf("%s-%s-save", fam, c.Mode), fmt.Sprintf("%s-%s-restore", fam, c.Mode)
		current, err := run(ctx, save, []string{"-t", "nat"}, "")
		if err != nil {
			return applied.String(), fmt.Errorf("reading the nat table: %w", err)
		}
		fc := c
		if fam == "ip6tables" {
			fc.SkipSubnets = filter(c.SkipSubnets, true)
		} else {
			fc.SkipSubnets = filter(c.SkipSubnets, false)
		}
		rules := Rules(fc, !strings.Contains(current, "-j "+RedirectChain))
		if _, err := run(ctx, restore, []string{"--noflush"}, rules); err != nil {
			return applied.String(), fmt.Errorf("writing the nat table: %w", err)
		}
		fmt.Fprintf(&applied, "# %s\n%s", restore, rules)
	}
	return applied.String(), nil
}

func filter(subnets []string, v6 bool) []string {
	var out []string
	for _, s := range subnets {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Addr().Is6() == v6 {
			out = append(out, s)
		}
	}
	return out
}
