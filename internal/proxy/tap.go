package proxy

import (
	"net"
	"net/http"
	"strconv"

	"github.com/weftmesh/weft/internal/compat"
	reqtap "github.com/weftmesh/weft/internal/tap"
)

// tapped shows the requests serve handles to the open taps (internal/tap);
// with none open it costs one atomic load.
func (p *Proxy) tapped(serve http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !p.tap.Active() {
			serve(w, r)
			return
		}
		info := connInfoFrom(r.Context())
		if info == nil {
			serve(w, r)
			return
		}
		m := reqtap.Meta{Inbound: info.direction == compat.Inbound, Source: r.RemoteAddr, Destination: info.dst,
			TLS: info.clientID != "", ClientID: info.clientID}
		if m.Inbound {
			// The pod's address and the port the client dialed.
			if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && info.port != 0 {
				if host, _, err := net.SplitHostPort(a.String()); err == nil {
					m.Destination = net.JoinHostPort(host, strconv.Itoa(int(info.port)))
				}
			}
		}
		w, r, done := p.tap.Begin(w, r, m)
		defer done()
		serve(w, r)
	}
}
