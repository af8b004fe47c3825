package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// listenOn binds addr in its own family only: "0.0.0.0:4143" is IPv4 and
// "[::]:4143" IPv6-only, so both can be bound as the injector configures
// dual-stack pods. (Go's "tcp" network would bind either wildcard as one
// dual-stack IPv6 socket, and the second would collide with it.)
func listenOn(addr string) (net.Listener, error) {
	network := "tcp"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			network = "tcp4"
			if ip.Is6() && !ip.Is4In6() {
				network = "tcp6"
			}
		}
	}
	var lc net.ListenConfig
	return lc.Listen(context.Background(), network, addr)
}

// isIPv6 reports whether addr's host is an IPv6 (not v4-mapped) address.
func isIPv6(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Is6() && !ip.Is4In6()
}

// ipv6Unavailable reports whether binding addr failed because the network
// namespace has no IPv6 (disabled, or no such local address).
func ipv6Unavailable(addr string, err error) bool {
	return isIPv6(addr) && (errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EPROTONOSUPPORT))
}
