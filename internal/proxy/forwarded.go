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
func addForwardedFor(r *http.Request, info *connInfo) {
	var f *forwardedFor
	if info != nil {
		f = info.forwarded.Load()
	}
	if f == nil || f.remote != r.RemoteAddr {
		f = forwardedOf(r.RemoteAddr)
		if info != nil {
			info.forwarded.Store(f)
		}
	}
	if f.xff == "" {
		return
	}
	h := r.Header
	if len(h["X-Forwarded-For"]) == 0 && len(h["Forwarded"]) == 0 {
		// The common first hop: both values in one allocation, each
		// slice capped so that appending to one cannot touch the other.
		v := []string{f.xff, f.fwd}
		h["X-Forwarded-For"], h["Forwarded"] = v[0:1:1], v[1:2:2]
		return
	}
	appendHeader(h, "X-Forwarded-For", f.xff)
	appendHeader(h, "Forwarded", f.fwd)
}

// forwardedFor is what addForwardedFor adds for one client address,
// formatted once per connection (connInfo.forwarded) rather than per
// request.
type forwardedFor struct {
	remote   string // the RemoteAddr it was made for
	xff, fwd string // both "" when remote is not an IP address
}

func forwardedOf(remote string) *forwardedFor {
	f := &forwardedFor{remote: remote}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return f
	}
	ip := ap.Addr().Unmap()
	f.xff = ip.String()
	f.fwd = "for=" + f.xff
	if ip.Is6() {
		f.fwd = `for="[` + f.xff + `]"` // RFC 7239 §6: IPv6 quoted and bracketed
	}
	return f
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
