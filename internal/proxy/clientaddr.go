package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/internal/iptables"
)

// With PreserveClientAddress (Weft's config.weft.io/preserve-client-address)
// the inbound proxy connects to the application at the address the client
// dialed (the pod IP) from the client's own IP: an IP_TRANSPARENT socket
// bound to that IP and marked iptables.ClientAddrMark, whose replies
// weft-proxy-init's mangle rules and policy route bring back to the proxy.
// It needs CAP_NET_ADMIN. HTTP connections to the app are pooled per
// client IP (appPoolKey), so no request rides a connection that names
// another client. When the transparent connection cannot be made (no
// capability, no rules, an app on loopback only) the proxy falls back to
// the usual connection from loopback and logs why, once.

// appPoolKey is the URL host an inbound HTTP request to the app at addr
// is sent with: addr itself, or with the client address kept, the
// client's IP and addr's port, so the transports pool connections per
// client.
func (p *Proxy) appPoolKey(info *connInfo, addr string) string {
	if !p.cfg.PreserveClientAddress || info.direction != "inbound" || !info.peer.IsValid() {
		return addr
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return addr
	}
	return netip.AddrPortFrom(info.peer, ap.Port()).String()
}

// dialAsClient connects to the app at the pod's own address, on addr's
// port, from the client's IP.
func (p *Proxy) dialAsClient(ctx context.Context, info *connInfo, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("app address %q: %w", addr, err)
	}
	if !info.local.IsValid() || !info.peer.IsValid() || info.local.Unmap().Is4() != info.peer.Unmap().Is4() {
		return nil, fmt.Errorf("no original destination and client address of one family (%v, %v)", info.local, info.peer)
	}
	to := netip.AddrPortFrom(info.local.Unmap(), ap.Port())
	d := net.Dialer{
		Timeout:   p.cfg.InboundConnectTimeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(info.peer.Unmap(), 0)),
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
				if to.Addr().Is6() {
					level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
				}
				if serr = unix.SetsockoptInt(int(fd), level, opt, 1); serr != nil {
					serr = fmt.Errorf("IP_TRANSPARENT (needs CAP_NET_ADMIN): %w", serr)
					return
				}
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, iptables.ClientAddrMark); serr != nil {
					serr = fmt.Errorf("SO_MARK (needs CAP_NET_ADMIN): %w", serr)
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	return d.DialContext(ctx, "tcp", to.String())
}
