package httproute

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/weftmesh/weft/internal/route"
)

// Match is the outcome of matching a request.
type Match struct {
	Rule *Rule
	// Prefix is the PathPrefix value that matched (for a URLRewrite or
	// RequestRedirect ReplacePrefixMatch); empty for other matches.
	Prefix string
}

// IsGRPC reports whether r is a gRPC request (its content type).
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

// Match finds the rule of r: a gRPC request is matched against the
// GRPCRoutes first, then every request against the HTTPRoutes; no match
// is the Default rule.
func (t *Table) Match(r *http.Request) Match {
	host := requestHost(r)
	if len(t.grpc) > 0 && IsGRPC(r) {
		svc, meth, ok := grpcPath(r.URL.Path)
		if ok {
			for i := range t.grpc {
				e := &t.grpc[i]
				if hostMatches(e.hostnames, host) && e.grpcSvc.match(svc) && e.grpcMeth.match(meth) && headersMatch(e.headers, r.Header) {
					return Match{Rule: e.rule}
				}
			}
		}
	}
	var query url.Values
	for i := range t.http {
		e := &t.http[i]
		if !hostMatches(e.hostnames, host) || !e.path.match(r.URL.Path) {
			continue
		}
		if e.method != "" && e.method != r.Method {
			continue
		}
		if !headersMatch(e.headers, r.Header) {
			continue
		}
		if len(e.query) > 0 {
			if query == nil {
				query = r.URL.Query()
			}
			if !queryMatches(e.query, query) {
				continue
			}
		}
		m := Match{Rule: e.rule}
		if e.path.kind == route.PathPrefix {
			m.Prefix = e.path.value
		}
		return m
	}
	return Match{Rule: t.Default}
}

// requestHost is the request's host name, lower case, without port.
func requestHost(r *http.Request) string {
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func hostMatches(hostnames []string, host string) bool {
	if len(hostnames) == 0 {
		return true
	}
	for _, h := range hostnames {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
		} else if h == host {
			return true
		}
	}
	return false
}

// grpcPath splits "/pkg.Service/Method".
func grpcPath(p string) (svc, method string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return "", "", false
	}
	svc, method, ok = strings.Cut(rest, "/")
	if !ok || svc == "" || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return svc, method, true
}

type pathMatcher struct {
	kind  route.PathKind
	value string // exact path, or prefix without its trailing slash
	re    *regexp.Regexp
	any   bool
}

func (m *pathMatcher) match(p string) bool {
	switch {
	case m.any:
		return true
	case m.re != nil:
		return m.re.MatchString(p)
	case m.kind == route.PathExact:
		return p == m.value
	default: // segment-wise prefix
		rest, ok := strings.CutPrefix(p, m.value)
		return ok && (rest == "" || rest[0] == '/')
	}
}

type valueMatcher struct {
	name  string // canonical header key, or query name
	value string
	re    *regexp.Regexp
}

func (m *valueMatcher) match(v string) bool {
	if m.re != nil {
		return m.re.MatchString(v)
	}
	return v == m.value
}

func headersMatch(ms []valueMatcher, h http.Header) bool {
	for i := range ms {
		if !anyMatches(&ms[i], h[ms[i].name]) {
			return false
		}
	}
	return true
}

func queryMatches(ms []valueMatcher, q url.Values) bool {
	for i := range ms {
		if !anyMatches(&ms[i], q[ms[i].name]) {
			return false
		}
	}
	return true
}

func anyMatches(m *valueMatcher, vs []string) bool {
	for _, v := range vs {
		if m.match(v) {
			return true
		}
	}
	return false
}

type stringMatcher struct {
	value string // empty: any
	re    *regexp.Regexp
}

func (m *stringMatcher) match(s string) bool {
	switch {
	case m.value == "":
		return true
	case m.re != nil:
		return m.re.MatchString(s)
	default:
		return s == m.value
	}
}

func compileValues(vs []route.ValueMatch, header bool) ([]valueMatcher, error) {
	out := make([]valueMatcher, 0, len(vs))
	for _, v := range vs {
		m := valueMatcher{name: v.Name, value: v.Value}
		if header {
			m.name = http.CanonicalHeaderKey(v.Name)
		}
		if v.Regex {
			re, err := compileRegex(v.Value)
			if err != nil {
				return nil, fmt.Errorf("match on %q: %w", v.Name, err)
			}
			m.re = re
		}
		out = append(out, m)
	}
	return out, nil
}

func compileHTTPMatch(m route.HTTPMatch) (entry, error) {
	var e entry
	e.pathRank = 1 // no path: PathPrefix "/"
	e.path = pathMatcher{kind: route.PathPrefix, any: true, value: "/"}
	if p := m.Path; p != nil {
		switch p.Kind {
		case route.PathExact:
			e.path = pathMatcher{kind: route.PathExact, value: p.Value}
			e.pathRank, e.pathLen = 0, len(p.Value)
		case route.PathRegex:
			re, err := compileRegex(p.Value)
			if err != nil {
				return e, fmt.Errorf("path: %w", err)
			}
			e.path = pathMatcher{kind: route.PathRegex, value: p.Value, re: re}
			e.pathRank, e.pathLen = 2, len(p.Value)
		case route.PathPrefix:
			v := strings.TrimRight(p.Value, "/")
			e.path = pathMatcher{kind: route.PathPrefix, value: v, any: v == ""}
			if v == "" {
				e.path.value = "/"
			}
			e.pathRank, e.pathLen = 1, len(v)
		default:
			return e, fmt.Errorf("unknown path match kind %d", p.Kind)
		}
	}
	e.method = m.Method
	var err error
	if e.headers, err = compileValues(m.Headers, true); err != nil {
		return e, err
	}
	if e.query, err = compileValues(m.Query, false); err != nil {
		return e, err
	}
	return e, nil
}

func compileGRPCMatch(m route.GRPCMatch) (entry, error) {
	var e entry
	e.grpcSvc = stringMatcher{value: m.Service}
	e.grpcMeth = stringMatcher{value: m.Method}
	if m.Regex {
		for _, sm := range []*stringMatcher{&e.grpcSvc, &e.grpcMeth} {
			if sm.value == "" {
				continue
			}
			re, err := compileRegex(sm.value)
			if err != nil {
				return e, err
			}
			sm.re = re
		}
	}
	var err error
	e.headers, err = compileValues(m.Headers, true)
	return e, err
}

// IsGRPCResponse reports whether resp is a gRPC response (its content type).
func IsGRPCResponse(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc")
}
