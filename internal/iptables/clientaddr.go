package iptables

import (
	"context"
	"fmt"
	"strconv"
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
// (the same scheme as Istio's TPROXY inbound mode). The proxy's own
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

// clientAddrRoutes are the ip(8) commands of one family ("-4" or "-6"):
// the rule and the local route. add=false removes them.
func clientAddrRoutes(family string, add bool) [][]string {
	verb := "add"
	if !add {
		verb = "del"
	}
	mark, table := strconv.Itoa(ClientAddrMark), strconv.Itoa(ClientAddrTable)
	return [][]string{
		{family, "rule", verb, "fwmark", mark, "lookup", table, "priority", table},
		{family, "route", verb, "local", "default", "dev", "lo", "table", table},
	}
}

// ApplyClientAddr installs the mangle rules and the policy route (IPv4, and
// IPv6 when configured) and returns what it did. Running it again changes
// nothing: the chain is rewritten, the jump, rule and route added only
// when missing.
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
		rulesNow, err := run(ctx, "ip", []string{fam.ip, "rule", "show"}, "")
		if err != nil {
			return applied.String(), fmt.Errorf("reading the policy rules: %w", err)
		}
		for i, args := range clientAddrRoutes(fam.ip, true) {
			if i == 0 && strings.Contains(rulesNow, "lookup "+strconv.Itoa(ClientAddrTable)) {
				continue
			}
			if i == 1 {
				routes, _ := run(ctx, "ip", []string{fam.ip, "route", "show", "table", strconv.Itoa(ClientAddrTable)}, "")
				if strings.Contains(routes, "local default dev lo") {
					continue
				}
			}
			if _, err := run(ctx, "ip", args, ""); err != nil {
				return applied.String(), fmt.Errorf("policy routing: %w", err)
			}
			fmt.Fprintf(&applied, "ip %s\n", strings.Join(args, " "))
		}
	}
	return applied.String(), nil
}

// RemoveClientAddr removes what ApplyClientAddr installed; what is already
// gone is skipped. (In a pod everything goes with its network namespace;
// this is for hosts and tests.)
func RemoveClientAddr(ctx context.Context, c Config, run Runner) error {
	for _, fam := range c.families() {
		cmd := fmt.Sprintf("%s-%s", fam.tables, c.Mode)
		run(ctx, cmd, []string{"-t", "mangle", "-D", "OUTPUT", "-m", "comment", "--comment", "weft/install-client-address", "-j", ClientAddrChain}, "")
		run(ctx, cmd, []string{"-t", "mangle", "-F", ClientAddrChain}, "")
		run(ctx, cmd, []string{"-t", "mangle", "-X", ClientAddrChain}, "")
		for _, args := range clientAddrRoutes(fam.ip, false) {
			run(ctx, "ip", args, "")
		}
		current, err := run(ctx, cmd+"-save", []string{"-t", "mangle"}, "")
		if err != nil {
			return fmt.Errorf("reading the mangle table: %w", err)
		}
		if strings.Contains(current, ClientAddrChain) {
			return fmt.Errorf("%s: %s is still in the mangle table", cmd, ClientAddrChain)
		}
		if rules, _ := run(ctx, "ip", []string{fam.ip, "rule", "show"}, ""); strings.Contains(rules, "lookup "+strconv.Itoa(ClientAddrTable)) {
			return fmt.Errorf("ip %s rule: the rule to table %d is still there", fam.ip, ClientAddrTable)
		}
	}
	return nil
}

type family struct{ tables, ip string }

func (c Config) families() []family {
	out := []family{{"iptables", "-4"}}
	if c.IPv6 {
		out = append(out, family{"ip6tables", "-6"})
	}
	return out
}
