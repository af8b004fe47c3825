package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// listenOn binds addr. An IPv6 address is bound IPv6-only ("tcp6"), so
// "[::]:4143" can sit beside "0.0.0.0:4143" as the injector configures
// dual-stack pods; Go's "tcp" would make [::] dual-stack and collide.
func listenOn(addr string) (net.Listener, error) {
	network := "tcp"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
			network = "tcp6"
		}
	}
	var lc net.ListenConfig
	return lc.Listen(context.Background(), network, addr)
}

// ipv6Unavailable reports whether binding addr failed because the network
// namespace has no IPv6 (disabled, or no such local address).
func ipv6Unavailable(addr string, err error) bool {
	host, _, serr := net.SplitHostPort(addr)
	if serr != nil {
		return false
	}
	ip, perr := netip.ParseAddr(host)
	if perr != nil || !ip.Is6() || ip.Is4In6() {
		return false
	}
	return errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EPROTONOSUPPORT)
}
