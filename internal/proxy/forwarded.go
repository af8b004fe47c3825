package proxy

import (
	"net/http"
	"net/netip"
)

// addForwardedFor tells the application who the client was: the inbound
// proxy connects to the app from loopback, so the app's own view of its
// peer is 127.0.0.1. It appends the client's IP (the inbound connection's
// peer) to X-Forwarded-For and a `for=` element to the standard Forwarded
// header (RFC 7239), after whatever earlier hops (an ingress) put there.
// A peer that is not an IP address (a test's in-memory connection) adds
// nothing.
func addForwardedFor(r *http.Request) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return
	}
	ip := ap.Addr().Unmap()
	node := ip.String()
	appendHeader(r.Header, "X-Forwarded-For", node)
	if ip.Is6() {
		node = `"[` + node + `]"` // RFC 7239 §6: IPv6 quoted and bracketed
	}
	appendHeader(r.Header, "Forwarded", "for="+node)
}

// appendHeader adds an element to a comma-separated list header, joining
// repeated fields into one line.
func appendHeader(h http.Header, name, elem string) {
	prior := h.Values(name)
	v := elem
	for i := len(prior) - 1; i >= 0; i-- {
		if prior[i] != "" {
			v = prior[i] + ", " + v
		}
	}
	h.Set(name, v)
}
