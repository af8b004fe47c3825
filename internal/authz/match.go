package authz

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
)

// Client is what the proxy knows of an inbound client.
type Client struct {
	Addr netip.Addr
	// Identity is the client's verified mTLS identity ("" without mTLS).
	Identity string
}

// Decision is the matcher's verdict on a connection or a request.
type Decision struct {
	Allowed bool
	// Audit: allowed only because the policy is audit; nothing authorized it.
	Audit bool
	// NotFound: the request matched none of the Server's routes (HTTP only).
	NotFound bool
	Server   Meta
	Route    Meta // HTTP only
	Authz    Meta // the authorization that allowed it (or "audit")
}

// Meta of the routes and authorizations the matcher makes up itself.
var (
	DefaultRoute = DefaultMeta("default")
	ProbeRoute   = DefaultMeta("probe")
	ProbeAuthz   = DefaultMeta("probe")
	AuditAuthz   = DefaultMeta(string(Audit))
)

// Policy is a PortPolicy ready to evaluate (regular expressions compiled,
// the default policy expanded). It is immutable: swap it for a new one
// when the policy changes.
type Policy struct {
	src     *PortPolicy
	authz   []Authorization // server-wide, defaults included
	audit   bool
	routes  []route
	probes  map[string]bool
	limiter *Limiter
}

type route struct {
	meta    Meta
	matches []compiledMatch
	authz   []Authorization
}

type compiledMatch struct {
	m       RouteMatch
	path    *regexp.Regexp
	headers []*regexp.Regexp // per header, nil for exact
}

// Compile prepares p for evaluation; cluster are the cluster networks the
// cluster-* defaults admit. It fails on an invalid regular expression,
// identity or rate, never admitting more than p says.
func Compile(p *PortPolicy, cluster []Network) (*Policy, error) {
	if p == nil {
		return nil, fmt.Errorf("no policy")
	}
	c := &Policy{src: p, audit: p.Default == Audit, probes: map[string]bool{}}
	if err := checkAuthorizations(p.Authorizations); err != nil {
		return nil, fmt.Errorf("server %s: %w", p.Server.Name, err)
	}
	c.authz = append(append([]Authorization(nil), p.Authorizations...), defaultAuthorizations(p.Default, cluster)...)
	for _, r := range p.Routes {
		if err := checkAuthorizations(r.Authorizations); err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
		}
		cr := route{meta: r.Meta, authz: r.Authorizations}
		for _, m := range r.Matches {
			cm, err := compileMatch(m)
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			cr.matches = append(cr.matches, cm)
		}
		c.routes = append(c.routes, cr)
	}
	for _, path := range p.ProbePaths {
		c.probes[path] = true
	}
	if p.RateLimit != nil {
		l, err := NewLimiter(*p.RateLimit)
		if err != nil {
			return nil, err
		}
		c.limiter = l
	}
	return c, nil
}

func checkAuthorizations(as []Authorization) error {
	for _, a := range as {
		if a.Authn != MeshTLS {
			continue
		}
		if len(a.Identities) == 0 {
			return fmt.Errorf("authorization %s: mesh TLS with no identity admits nobody; refusing it", a.Meta.Name)
		}
		for _, id := range a.Identities {
			if err := ValidIdentity(id); err != nil {
				return fmt.Errorf("authorization %s: %w", a.Meta.Name, err)
			}
		}
	}
	return nil
}

func compileMatch(m RouteMatch) (compiledMatch, error) {
	cm := compiledMatch{m: m}
	if m.Path != nil && m.Path.Kind == PathRegex {
		re, err := regexp.Compile("^(?:" + m.Path.Value + ")$")
		if err != nil {
			return cm, fmt.Errorf("path regex %q: %v", m.Path.Value, err)
		}
		cm.path = re
	}
	for _, h := range m.Headers {
		var re *regexp.Regexp
		if h.Regex {
			var err error
			if re, err = regexp.Compile("^(?:" + h.Value + ")$"); err != nil {
				return cm, fmt.Errorf("header %s regex %q: %v", h.Name, h.Value, err)
			}
		}
		cm.headers = append(cm.headers, re)
	}
	return cm, nil
}

// Source returns the policy Compile was given.
func (p *Policy) Source() *PortPolicy { return p.src }

// Limiter is the Server's rate limiter, nil without one.
func (p *Policy) Limiter() *Limiter { return p.limiter }

// IsProbe reports whether a request is a kubelet probe of the pod (GET on
// one of its probe paths). Probes are never rate-limited: a limit must not
// make the pod unready.
func (p *Policy) IsProbe(method, path string) bool {
	return method == http.MethodGet && p.probes[path]
}

// Protocol is the Server's proxyProtocol.
func (p *Policy) Protocol() Protocol { return p.src.Protocol }

// CheckConn decides an opaque (non-HTTP) connection by the Server-wide
// authorizations.
func (p *Policy) CheckConn(c Client) Decision {
	d := Decision{Server: p.src.Server}
	return p.decide(d, c, p.authz, nil)
}

// CheckRequest decides an HTTP request: the route it matches, then the
// Server-wide and route authorizations.
func (p *Policy) CheckRequest(c Client, method, path string, h http.Header) Decision {
	d := Decision{Server: p.src.Server}
	if len(p.routes) == 0 {
		// A kubelet probe never asks to switch protocols: an Upgrade on a
		// probe path must not open a tunnel past the policy.
		if method == http.MethodGet && p.probes[path] && h.Get("Upgrade") == "" {
			d.Route, d.Authz, d.Allowed = ProbeRoute, ProbeAuthz, true
			return d
		}
		d.Route = DefaultRoute
		return p.decide(d, c, p.authz, nil)
	}
	best, bestScore := -1, -1
	for i, r := range p.routes {
		if s := r.score(method, path, h); s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		d.NotFound = true
		return d
	}
	r := p.routes[best]
	d.Route = r.meta
	return p.decide(d, c, p.authz, r.authz)
}

func (p *Policy) decide(d Decision, c Client, sets ...[]Authorization) Decision {
	for _, set := range sets {
		for _, a := range set {
			if a.Admits(c) {
				d.Allowed, d.Authz = true, a.Meta
				return d
			}
		}
	}
	if p.audit {
		d.Allowed, d.Audit, d.Authz = true, true, AuditAuthz
	}
	return d
}

// Admits reports whether c satisfies the authorization.
func (a *Authorization) Admits(c Client) bool {
	if len(a.Networks) > 0 {
		in := false
		for _, n := range a.Networks {
			if c.Addr.IsValid() && n.Contains(c.Addr) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if a.Authn == Unauthenticated {
		return true
	}
	if c.Identity == "" {
		return false
	}
	for _, id := range a.Identities {
		if IdentityMatches(id, c.Identity) {
			return true
		}
	}
	return false
}

// IdentityMatches reports whether a client identity matches a pattern:
// exact, "*" (any identity) or "*.suffix".
func IdentityMatches(pattern, id string) bool {
	switch {
	case id == "":
		return false
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return len(id) > len(pattern)-1 && strings.HasSuffix(id, pattern[1:])
	}
	return pattern == id
}

// score ranks how specifically r matches a request (-1: no match), by
// Gateway API precedence: exact path, longest prefix, method, headers.
func (r route) score(method, path string, h http.Header) int {
	if len(r.matches) == 0 {
		return 2<<20 + 1 // like PathPrefix "/"
	}
	best := -1
	for _, m := range r.matches {
		if s := m.score(method, path, h); s > best {
			best = s
		}
	}
	return best
}

func (m compiledMatch) score(method, path string, h http.Header) int {
	s := 2<<20 + 1
	if pm := m.m.Path; pm != nil {
		switch pm.Kind {
		case PathExact:
			if path != pm.Value {
				return -1
			}
			s = 3<<20 + len(pm.Value)
		case PathPrefix:
			if !prefixMatch(pm.Value, path) {
				return -1
			}
			s = 2<<20 + len(pm.Value)
		case PathRegex:
			if !m.path.MatchString(path) {
				return -1
			}
			s = 1<<20 + len(pm.Value)
		}
	}
	s <<= 8
	if m.m.Method != "" {
		if !strings.EqualFold(m.m.Method, method) {
			return -1
		}
		s += 1 << 7
	}
	for i, hm := range m.m.Headers {
		v := h.Values(hm.Name)
		ok := false
		for _, x := range v {
			if re := m.headers[i]; re != nil && re.MatchString(x) || re == nil && x == hm.Value {
				ok = true
				break
			}
		}
		if !ok {
			return -1
		}
	}
	return s + min(len(m.m.Headers), 127)
}

// prefixMatch is Gateway API's PathPrefix: element-wise ("/api" matches
// "/api" and "/api/x", not "/apix").
func prefixMatch(prefix, path string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return true
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
