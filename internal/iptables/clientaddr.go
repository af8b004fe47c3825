package iptables

import (
	"context"
	"fmt"
	"strings"
)

// The client address kept (Weft's config.weft.io/preserve-client-address):
// the inbound proxy connects to the application at the pod's own IP from
// the client's IP, with an IP_TRANSPARENT socket marked ClientAddrMark.
// The application's replies go to the client's IP, which would be routed
// out of the pod; these rules send them back to the proxy instead:
//
//	mangle OUTPUT → WEFT_CLIENT_ADDR:
//	  -m mark --mark M -j CONNMARK --save-mark      the proxy's packets: mark their connection
//	  -m connmark --mark M -j CONNMARK --restore-mark  the app's replies: take the mark back
//	ip rule add fwmark M lookup T
//	ip route add local default dev lo table T     marked packets are delivered locally
//
// (the last two written over netlink by package policyroute, so the init
// image needs no ip(8)); the same scheme as Istio's TPROXY inbound mode.
// The proxy's own
// connection is not redirected by the nat rules (its UID is skipped).
const (
	ClientAddrChain = "WEFT_CLIENT_ADDR"
	ClientAddrMark  = 0x5746
	ClientAddrTable = 5746
)

// ClientAddrRules returns the iptables-restore input for the mangle table;
// withJump adds the OUTPUT jump (when it is not installed yet).
func ClientAddrRules(withJump bool) string {
	var b strings.Builder
	rule := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	rule("*mangle")
	rule(":%s - [0:0]", ClientAddrChain)
	rule("-A %s -m mark --mark %#x -m comment --comment \"weft/client-address-save\" -j CONNMARK --save-mark", ClientAddrChain, ClientAddrMark)
	rule("-A %s -m connmark --mark %#x -m comment --comment \"weft/client-address-restore\" -j CONNMARK --restore-mark", ClientAddrChain, ClientAddrMark)
	if withJump {
		rule("-A OUTPUT -m comment --comment \"weft/install-client-address\" -j %s", ClientAddrChain)
	}
	rule("COMMIT")
	return b.String()
}

// ApplyClientAddr installs the mangle rules (IPv4, and IPv6 when
// configured) and returns what it wrote. Running it again changes nothing:
// the chain is rewritten, the jump added only when missing. The policy
// rule and route are written over netlink by package policyroute.
func ApplyClientAddr(ctx context.Context, c Config, run Runner) (string, error) {
	var applied strings.Builder
	for _, fam := range c.families() {
		save, restore := fmt.Sprintf("%s-%s-save", fam.tables, c.Mode), fmt.Sprintf("%s-%s-restore", fam.tables, c.Mode)
		current, err := run(ctx, save, []string{"-t", "mangle"}, "")
		if err != nil {
			return applied.String(), fmt.Errorf("reading the mangle table: %w", err)
		}
		rules := ClientAddrRules(!strings.Contains(current, "-j "+ClientAddrChain))
		if _, err := run(ctx, restore, []string{"--noflush"}, rules); err != nil {
			return applied.String(), fmt.Errorf("writing the mangle table: %w", err)
		}
		fmt.Fprintf(&applied, "# %s\n%s", restore, rules)
	}
	return applied.String(), nil
}

// RemoveClientAddr removes the mangle rules ApplyClientAddr installed;
// what is already gone is skipped. (In a pod everything goes with its
// network namespace; this is for hosts and tests.)
func RemoveClientAddr(ctx context.Context, c Config, run Runner) error {
	for _, fam := range c.families() {
		cmd := fmt.Sprintf("%s-%s", fam.tables, c.Mode)
		run(ctx, cmd, []string{"-t", "mangle", "-D", "OUTPUT", "-m", "comment", "--comment", "weft/install-client-address", "-j", ClientAddrChain}, "")
		run(ctx, cmd, []string{"-t", "mangle", "-F", ClientAddrChain}, "")
		run(ctx, cmd, []string{"-t", "mangle", "-X", ClientAddrChain}, "")
		current, err := run(ctx, cmd+"-save", []string{"-t", "mangle"}, "")
		if err != nil {
			return fmt.Errorf("reading the mangle table: %w", err)
		}
		if strings.Contains(current, ClientAddrChain) {
			return fmt.Errorf("%s: %s is still in the mangle table", cmd, ClientAddrChain)
		}
	}
	return nil
}

type family struct{ tables string }

func (c Config) families() []family {
	out := []family{{"iptables"}}
	if c.IPv6 {
		out = append(out, family{"ip6tables"})
	}
	return out
}
