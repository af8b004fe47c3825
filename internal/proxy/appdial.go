package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Inbound traffic goes to the application at 127.0.0.1:<port>, which
// reaches apps listening on 0.0.0.0 or on loopback. An app that listens
// only on its pod IP refuses that connection at once (ECONNREFUSED, no
// timeout), so the proxy then dials the address the client dialed (the
// pod's own IP, from SO_ORIGINAL_DST) on the same port. The proxy's own
// UID is exempt from linkerd-init's OUTPUT rules, so that connection is
// not redirected back to the proxy.
//
// Which address answered is remembered per port: later connections go
// straight to it, and only when it refuses is the other one tried (an app
// restarted with another bind address). The usual app (0.0.0.0) pays
// nothing; an app on the pod IP pays one refused loopback connect, once
// per port (docs/proxy.md has the measurements).

// appRoutes remembers, per application port, that the app answered on the
// pod's own address rather than on loopback.
type appRoutes struct {
	viaLocal sync.Map // uint16 → bool
}

func (a *appRoutes) preferLocal(port uint16) bool {
	v, ok := a.viaLocal.Load(port)
	return ok && v.(bool)
}

func (a *appRoutes) remember(port uint16, local bool) {
	if a.preferLocal(port) != local {
		a.viaLocal.Store(port, local)
	}
}

// appFallback is the other address an inbound connection to addr may
// reach the app at: the local address the client dialed, on addr's port.
// ok is false when there is none (not a loopback target, no original
// destination, or the client dialed that loopback address itself).
func appFallback(addr string, local netip.Addr) (alt string, port uint16, ok bool) {
	ap, err := netip.ParseAddrPort(addr)
	local = local.Unmap()
	if err != nil || !ap.Addr().IsLoopback() || !local.IsValid() || local == ap.Addr() || local.IsUnspecified() {
		return "", 0, false
	}
	return netip.AddrPortFrom(local, ap.Port()).String(), ap.Port(), true
}

// dialApp connects an inbound connection to the application at addr
// (127.0.0.1:<port>) or, when the app refuses there, at the pod's own
// address the client dialed. ctx carries the connection's connInfo.
func (p *Proxy) dialApp(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: p.cfg.InboundConnectTimeout}
	var local netip.Addr
	if info := connInfoFrom(ctx); info != nil {
		local = info.local
		if p.cfg.PreserveClientAddress {
			c, err := p.dialAsClient(ctx, info, addr)
			if err == nil {
				return c, nil
			}
			p.clientAddrOnce.Do(func() {
				p.log.Warn("cannot connect to the application from the client's address; connecting from the proxy's (logged once)", "err", err)
			})
			addr = loopbackFor(addr)
		}
	}
	alt, port, ok := appFallback(addr, local)
	if !ok {
		return d.DialContext(ctx, "tcp", addr)
	}
	first, second := addr, alt
	if p.apps.preferLocal(port) {
		first, second = alt, addr
	}
	c, err := d.DialContext(ctx, "tcp", first)
	if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		return c, err
	}
	c, err2 := d.DialContext(ctx, "tcp", second)
	if err2 != nil {
		return nil, fmt.Errorf("the application refused %s, and at %s: %w", first, second, err2)
	}
	p.apps.remember(port, second == alt)
	return c, nil
}

// loopbackFor is 127.0.0.1 on addr's port (addr may be a per-client pool
// key, appPoolKey).
func loopbackFor(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return addr
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port()).String()
}
