// Package origdst recovers the destination a connection was addressed to
// before iptables redirected it to the proxy (SO_ORIGINAL_DST for IPv4,
// IP6T_SO_ORIGINAL_DST for IPv6).
package origdst

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// ErrNotRedirected means the connection was not redirected by iptables: its
// original destination is the listener itself.
var ErrNotRedirected = errors.New("origdst: connection was not redirected")

// Lookup returns the original destination of c. For a connection that
// iptables did not redirect it returns c's local address and ErrNotRedirected.
func Lookup(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return localAddr(c), fmt.Errorf("origdst: %T is not a TCP connection: %w", c, ErrNotRedirected)
	}
	local := localAddr(c)
	dst, err := lookup(tc, local.Addr().Unmap().Is6())
	if err != nil {
		// No NAT entry (ENOENT) means the connection reached us directly.
		return local, fmt.Errorf("%w: %v", ErrNotRedirected, err)
	}
	if dst == local {
		return local, ErrNotRedirected
	}
	return dst, nil
}

func localAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(c.LocalAddr().String())
	return ap
}
