// Package policyroute writes the policy rule and the local route behind
// Weft's client address (config.weft.io/preserve-client-address) over
// netlink, so weft-proxy-init needs no ip(8) in its image:
//
//	ip rule add fwmark 0x5746 lookup 5746 priority 5746
//	ip route add local default dev lo table 5746
//
// for IPv4 and, optionally, IPv6. Packets the mangle rules marked
// (iptables.ClientAddrRules) are then delivered locally, to the proxy.
package policyroute

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/internal/iptables"
)

// Mark, Table and Priority are the rule's fwmark, the table it looks up
// and its priority.
const (
	Mark     = iptables.ClientAddrMark
	Table    = iptables.ClientAddrTable
	Priority = iptables.ClientAddrTable
)

// Router writes the rule and route in one network namespace.
type Router struct {
	h *netlink.Handle
}

// New is a Router for the calling process's network namespace.
func New() (*Router, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Router{h: h}, nil
}

// InNamespace is a Router for the named network namespace
// (/var/run/netns/name, as ip-netns(8) creates them).
func InNamespace(name string) (*Router, error) {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %q: %w", name, err)
	}
	return &Router{h: h}, nil
}

// Close releases the netlink socket.
func (r *Router) Close() { r.h.Close() }

type family struct {
	nl   int
	name string // ip(8)'s flag, for what Apply prints
	all  *net.IPNet
}

func families(ipv6 bool) []family {
	out := []family{{netlink.FAMILY_V4, "-4", &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}}
	if ipv6 {
		out = append(out, family{netlink.FAMILY_V6, "-6", &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}})
	}
	return out
}

// Describe lists, in ip(8)'s words, the rules and routes Apply writes
// (for a dry run).
func Describe(ipv6 bool) string {
	var b strings.Builder
	for _, f := range families(ipv6) {
		b.WriteString(f.ruleWords())
		b.WriteString(f.routeWords())
	}
	return b.String()
}

func (f family) ruleWords() string {
	return fmt.Sprintf("ip %s rule add fwmark %#x lookup %d priority %d\n", f.name, Mark, Table, Priority)
}

func (f family) routeWords() string {
	return fmt.Sprintf("ip %s route add local default dev lo table %d\n", f.name, Table)
}

func (f family) rule() *netlink.Rule {
	r := netlink.NewRule()
	r.Family = f.nl
	r.Mark = Mark
	r.Table = Table
	r.Priority = Priority
	return r
}

func (r *Router) route(f family) (*netlink.Route, error) {
	lo, err := r.h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("the loopback interface: %w", err)
	}
	return &netlink.Route{
		Family:    f.nl,
		LinkIndex: lo.Attrs().Index,
		Dst:       f.all,
		Type:      unix.RTN_LOCAL,
		Scope:     unix.RT_SCOPE_HOST,
		Table:     Table,
	}, nil
}

// rules are the family's rules that look up Table on Mark.
func (r *Router) rules(f family) ([]netlink.Rule, error) {
	all, err := r.h.RuleListFiltered(f.nl, &netlink.Rule{Table: Table}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing the ip %s rules: %w", f.name, err)
	}
	var out []netlink.Rule
	for _, ru := range all {
		if ru.Table == Table && ru.Mark == Mark {
			out = append(out, ru)
		}
	}
	return out, nil
}

// routes are the family's routes in Table.
func (r *Router) routes(f family) ([]netlink.Route, error) {
	rs, err := r.h.RouteListFiltered(f.nl, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("listing ip %s table %d: %w", f.name, Table, err)
	}
	return rs, nil
}

// Apply adds the rule and the route of each family where they are missing
// and returns what it added, in ip(8)'s words. Running it again adds
// nothing.
func (r *Router) Apply(ipv6 bool) (string, error) {
	var did strings.Builder
	for _, f := range families(ipv6) {
		have, err := r.rules(f)
		if err != nil {
			return did.String(), err
		}
		if len(have) == 0 {
			if err := r.h.RuleAdd(f.rule()); err != nil {
				return did.String(), fmt.Errorf("ip %s rule add fwmark %#x lookup %d: %w", f.name, Mark, Table, err)
			}
			did.WriteString(f.ruleWords())
		}
		routes, err := r.routes(f)
		if err != nil {
			return did.String(), err
		}
		if !hasLocalDefault(routes) {
			rt, err := r.route(f)
			if err != nil {
				return did.String(), err
			}
			switch err := r.h.RouteAdd(rt); {
			case errors.Is(err, unix.EEXIST): // there already: nothing added
			case err != nil:
				return did.String(), fmt.Errorf("ip %s route add local default dev lo table %d: %w", f.name, Table, err)
			default:
				did.WriteString(f.routeWords())
			}
		}
	}
	return did.String(), nil
}

func hasLocalDefault(routes []netlink.Route) bool {
	for _, rt := range routes {
		if rt.Type == unix.RTN_LOCAL && (rt.Dst == nil || isDefault(rt.Dst)) {
			return true
		}
	}
	return false
}

func isDefault(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return ones == 0
}

// Remove deletes what Apply added (what is already gone is skipped) and
// checks that nothing is left. In a pod everything goes with its network
// namespace; this is for hosts and tests.
func (r *Router) Remove(ipv6 bool) error {
	for _, f := range families(ipv6) {
		rules, err := r.rules(f)
		if err != nil {
			return err
		}
		for _, ru := range rules {
			del := f.rule()
			del.Priority = ru.Priority
			if err := r.h.RuleDel(del); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("ip %s rule del fwmark %#x lookup %d: %w", f.name, Mark, Table, err)
			}
		}
		routes, err := r.routes(f)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if err := r.h.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("ip %s route del table %d: %w", f.name, Table, err)
			}
		}
		if rules, err := r.rules(f); err != nil || len(rules) > 0 {
			return fmt.Errorf("ip %s: the rule to table %d is still there (%v)", f.name, Table, err)
		}
		if routes, err := r.routes(f); err != nil || len(routes) > 0 {
			return fmt.Errorf("ip %s: table %d still has %d routes (%v)", f.name, Table, len(routes), err)
		}
	}
	return nil
}
