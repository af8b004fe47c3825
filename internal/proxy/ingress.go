package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/compat"
)

// Ingress mode (linkerd.io/inject: ingress, weft inject --ingress): the
// ingress controller's outbound requests are routed by the service they
// name, not by the address the controller connected to, so the proxy
// balances over the Service's endpoints, applies its routes and speaks
// mTLS to meshed ones. The name comes from l5d-dst-override (what
// Linkerd's ingress guides have the controller set), else from the
// request's :authority or Host, else the connection's original
// destination. A malformed override is answered 400 naming the header
// and the value, so a misconfigured ingress fails at once and says why.

// ingressDestination picks the destination of an ingress-mode request;
// orig is the connection's original destination ("" when not redirected).
func ingressDestination(r *http.Request, orig string) (string, error) {
	if vs := r.Header[keyDstOverride]; len(vs) > 0 {
		return parseOverride(vs)
	}
	if r.Host != "" {
		if a, err := authorityWithPort(r.Host); err == nil {
			return a, nil
		}
	}
	if orig != "" {
		return orig, nil
	}
	return "", fmt.Errorf("ingress mode: the request has no %s header and no Host or :authority to route by", compat.HeaderDstOverride)
}

// parseOverride validates l5d-dst-override's values: one authority,
// host[:port] (port 80 by default), the host a DNS name or an IP.
func parseOverride(values []string) (string, error) {
	var all []string
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			all = append(all, strings.TrimSpace(e))
		}
	}
	bad := func(v, why string) error {
		return fmt.Errorf("%s %q: %s (want <service>.<namespace>.svc.cluster.local:<port>)", compat.HeaderDstOverride, v, why)
	}
	for _, e := range all[1:] {
		if e != all[0] {
			return "", bad(strings.Join(values, ", "), "more than one destination")
		}
	}
	a, err := authorityWithPort(all[0])
	if err != nil {
		return "", bad(all[0], err.Error())
	}
	return a, nil
}

// authorityWithPort checks a host[:port] authority and adds port 80 when
// it has none.
func authorityWithPort(a string) (string, error) {
	if a == "" {
		return "", fmt.Errorf("empty")
	}
	if strings.Contains(a, "/") || strings.Contains(a, "@") {
		return "", fmt.Errorf("not an authority (no scheme, path or user info)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "80"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	if _, err := netip.ParseAddr(host); err != nil && !isDNSName(host) {
		return "", fmt.Errorf("%q is neither a DNS name nor an IP address", host)
	}
	return net.JoinHostPort(host, port), nil
}

// isDNSName reports whether s is a hostname: dot-separated labels of
// letters, digits and inner hyphens, at most 253 bytes (a trailing dot
// allowed).
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
