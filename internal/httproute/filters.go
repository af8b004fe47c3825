package httproute

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/internal/route"
)

// ModifyHeaders applies a RequestHeaderModifier or ResponseHeaderModifier
// to h: set replaces, add appends, remove deletes (names case-insensitive).
func ModifyHeaders(h http.Header, m *route.HeaderModifier) {
	if m == nil {
		return
	}
	for _, s := range m.Set {
		h.Set(s.Name, s.Value)
	}
	for _, a := range m.Add {
		h.Add(a.Name, a.Value)
	}
	for _, n := range m.Remove {
		h.Del(n)
	}
}

// ModifyPath returns the path after a ReplaceFullPath or
// ReplacePrefixMatch modifier; prefix is the PathPrefix that matched (a
// ReplacePrefixMatch without one replaces nothing).
func ModifyPath(path string, m *route.PathModifier, prefix string) string {
	if m == nil {
		return path
	}
	switch m.Kind {
	case route.ReplaceFullPath:
		if m.Value == "" {
			return "/"
		}
		return m.Value
	case route.ReplacePrefixMatch:
		if prefix == "" {
			return path
		}
		p := strings.TrimRight(prefix, "/")
		rest, ok := strings.CutPrefix(path, p)
		if !ok {
			return path
		}
		repl := strings.TrimRight(m.Value, "/")
		out := repl + rest
		if out == "" || out[0] != '/' {
			out = "/" + out
		}
		return out
	}
	return path
}

// RedirectLocation builds the Location and status of a RequestRedirect
// as the Gateway API specifies: unset parts come from the request; the
// port is the redirect's, else the scheme's well-known port when the
// scheme changes, else the request's; well-known ports are left out.
func RedirectLocation(r *http.Request, rd *route.Redirect, prefix string) (string, int) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	reqHost, reqPort := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		reqHost, reqPort = h, p
	}
	port := reqPort
	if rd.Scheme != "" {
		scheme = strings.ToLower(rd.Scheme)
		port = ""
	}
	if rd.Port != 0 {
		port = strconv.Itoa(int(rd.Port))
	}
	host := reqHost
	if rd.Hostname != "" {
		host = rd.Hostname
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	u := url.URL{Scheme: scheme, Host: host, Path: ModifyPath(r.URL.Path, rd.Path, prefix), RawQuery: r.URL.RawQuery}
	status := rd.StatusCode
	if status != http.StatusMovedPermanently {
		status = http.StatusFound
	}
	return u.String(), status
}
