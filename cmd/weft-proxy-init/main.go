// Command weft-proxy-init is the linkerd-init container: it writes the nat
// rules that send a pod's TCP traffic through its proxy (package iptables),
// idempotently, and prints what it wrote. Its flags are proxy-init's.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/policyroute"
	"github.com/weftmesh/weft/internal/version"
)

func main() {
	c := iptables.DefaultConfig()
	fs := flag.NewFlagSet("weft-proxy-init", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weft-proxy-init [flags]\n\nWrites the nat rules of the linkerd-init container (needs NET_ADMIN and NET_RAW).\n\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.InboundPort, "incoming-proxy-port", c.InboundPort, "the proxy's inbound port")
	fs.IntVar(&c.OutboundPort, "outgoing-proxy-port", c.OutboundPort, "the proxy's outbound port")
	fs.IntVar(&c.ProxyUID, "proxy-uid", c.ProxyUID, "the proxy's UID: its own traffic is let out")
	fs.IntVar(&c.ProxyGID, "proxy-gid", c.ProxyGID, "the proxy's GID (-1: no GID rule)")
	inbound := fs.String("inbound-ports-to-ignore", strings.Join(c.IgnoreInboundPorts, ","), "inbound ports and ranges that bypass the proxy")
	outbound := fs.String("outbound-ports-to-ignore", "", "outbound ports and ranges that bypass the proxy")
	subnets := fs.String("subnets-to-ignore", "", "destination CIDRs that bypass the proxy")
	firewall := fs.String("firewall-bin-path", "iptables-legacy", "iptables-legacy or iptables-nft")
	fs.BoolVar(&c.IPv6, "ipv6", true, "also write the ip6tables rules")
	clientAddr := fs.Bool("preserve-client-address", false, "also write Weft's client-address rules (mangle table, policy route; docs/proxy.md), for pods with "+compat.AnnotationPreserveClientAddress)
	dry := fs.Bool("dry-run", false, "print the rules without writing them")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	split := func(s string) []string {
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	c.IgnoreInboundPorts, c.IgnoreOutboundPorts, c.SkipSubnets = split(*inbound), split(*outbound), split(*subnets)
	switch *firewall {
	case "iptables-legacy", "iptables":
		c.Mode = "legacy"
	case "iptables-nft":
		c.Mode = "nft"
	default:
		log.Fatalf("weft-proxy-init: --firewall-bin-path %q: want iptables-legacy or iptables-nft", *firewall)
	}
	if err := c.Validate(); err != nil {
		log.Fatalf("weft-proxy-init: %v", err)
	}
	if *dry {
		fmt.Print(iptables.Rules(c, true))
		if *clientAddr {
			fmt.Print(iptables.ClientAddrRules(true))
			fmt.Print(policyroute.Describe(c.IPv6))
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := iptables.Apply(ctx, c, iptables.ExecRunner)
	fmt.Print(out)
	if err != nil {
		log.Fatalf("weft-proxy-init: %v", err)
	}
	if *clientAddr {
		out, err := iptables.ApplyClientAddr(ctx, c, iptables.ExecRunner)
		fmt.Print(out)
		if err != nil {
			log.Fatalf("weft-proxy-init: client address: %v", err)
		}
		if err := clientAddrRoute(c.IPv6); err != nil {
			log.Fatalf("weft-proxy-init: client address: %v", err)
		}
	}
}

// clientAddrRoute writes the client address's policy rule and local route
// over netlink (the image has no ip(8)) and prints what it added.
func clientAddrRoute(ipv6 bool) error {
	r, err := policyroute.New()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := r.Apply(ipv6)
	fmt.Print(out)
	return err
}
