package outbound

import (
	"errors"
	"fmt"
	"regexp/syntax"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/route"
)

// Regular expressions are RE2 (Go's regexp) and bounded: at most
// MaxRegexLen bytes and MaxRegexInsts compiled instructions.
const (
	MaxRegexLen   = 1024
	MaxRegexInsts = 5000
)

// Reasons of the conditions the policy controller writes (Gateway API
// RouteConditionReason values, plus Weft's MatchConflict).
const (
	ReasonAccepted         = "Accepted"
	ReasonUnsupportedValue = "UnsupportedValue"
	ReasonNoMatchingParent = "NoMatchingParent"
	ReasonResolvedRefs     = "ResolvedRefs"
	ReasonBackendNotFound  = "BackendNotFound"
	ReasonInvalidKind      = "InvalidKind"
	ReasonMatchConflict    = "MatchConflict"
	ReasonNoConflict       = "NoConflict"
)

// parentTarget is a Service a route attaches to.
type parentTarget struct {
	Ref       ParentRef // as written, for status
	Namespace string
	Name      string
	Port      uint16 // 0: every port
}

// backendRef is a backend the route references (rules and mirrors).
type backendRef struct {
	Namespace, Name string
	Kind            string // "" or Service when supported
	Port            uint16
}

// translated is a route object read once: its Service parents, its table
// entry (nil when invalid) and why it is invalid.
type translated struct {
	parents  []parentTarget
	backends []backendRef
	http     *route.HTTPRoute
	grpc     *route.GRPCRoute
	invalid  error
	matches  []string // canonical forms of its matches, for conflicts
}

// isServiceRef reports whether group/kind name a core Service; def is
// the kind when unset.
func isServiceRef(group, kind *string, def string) bool {
	g, k := "", def
	if group != nil {
		g = *group
	}
	if kind != nil {
		k = *kind
	}
	return (g == "" || g == "core") && k == "Service"
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// translate validates r and converts it. domain is the cluster domain (for
// backend authorities).
func translate(r *Route, domain string) *translated {
	t := &translated{}
	for _, p := range r.Spec.ParentRefs {
		// Gateway API: the kind defaults to Gateway; other controllers'
		// parents are not ours to judge.
		if !isServiceRef(p.Group, p.Kind, "Gateway") {
			continue
		}
		pt := parentTarget{Ref: p, Namespace: deref(p.Namespace, r.Namespace), Name: p.Name}
		if p.Port != nil {
			if *p.Port < 1 || *p.Port > 65535 {
				t.invalid = fmt.Errorf("parentRef %s: port %d out of range", p.Name, *p.Port)
				continue
			}
			pt.Port = uint16(*p.Port)
		}
		t.parents = append(t.parents, pt)
	}
	if len(t.parents) == 0 || t.invalid != nil {
		return t
	}
	meta := route.Meta{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Created: r.Created}
	var errs []error
	isGRPC := r.Kind == KindGRPC
	pol, perrs := parsePolicy(r.Annotations, !isGRPC, isGRPC)
	errs = append(errs, perrs...)
	c := converter{route: r, domain: domain, t: t, grpc: isGRPC}
	if isGRPC {
		gr := &route.GRPCRoute{Meta: meta, Hostnames: r.Spec.Hostnames, Policy: pol}
		for i, rs := range r.Spec.Rules {
			rule := route.GRPCRule{}
			for _, m := range rs.Matches {
				gm, err := c.grpcMatch(m)
				if err != nil {
					errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
					continue
				}
				rule.Matches = append(rule.Matches, gm)
				t.matches = append(t.matches, fmt.Sprintf("%+v", gm))
			}
			if len(rs.Matches) == 0 {
				t.matches = append(t.matches, "grpc:*")
			}
			var err error
			if rule.Filters, rule.Backends, rule.Timeouts, rule.Retry, err = c.common(rs); err != nil {
				errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
			}
			gr.Rules = append(gr.Rules, rule)
		}
		t.grpc = gr
	} else {
		hr := &route.HTTPRoute{Meta: meta, Hostnames: r.Spec.Hostnames, Policy: pol}
		for i, rs := range r.Spec.Rules {
			rule := route.HTTPRule{}
			for _, m := range rs.Matches {
				hm, err := c.httpMatch(m)
				if err != nil {
					errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
					continue
				}
				rule.Matches = append(rule.Matches, hm)
				t.matches = append(t.matches, canonicalHTTP(hm))
			}
			if len(rs.Matches) == 0 {
				t.matches = append(t.matches, canonicalHTTP(route.HTTPMatch{Path: &route.PathMatch{Kind: route.PathPrefix, Value: "/"}}))
			}
			var err error
			if rule.Filters, rule.Backends, rule.Timeouts, rule.Retry, err = c.common(rs); err != nil {
				errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
			}
			hr.Rules = append(hr.Rules, rule)
		}
		t.http = hr
	}
	if err := errors.Join(errs...); err != nil {
		t.invalid, t.http, t.grpc = err, nil, nil
	}
	return t
}

// canonicalHTTP is an HTTP match's identity for conflict detection:
// hostnames aside, two routes with the same canonical match compete for
// the same requests.
func canonicalHTTP(m route.HTTPMatch) string {
	var b strings.Builder
	if m.Path != nil {
		fmt.Fprintf(&b, "path:%d:%s;", m.Path.Kind, m.Path.Value)
	} else {
		b.WriteString("path:0:/;")
	}
	fmt.Fprintf(&b, "method:%s;h:%v;q:%v", m.Method, m.Headers, m.Query)
	return b.String()
}

type converter struct {
	route  *Route
	domain string
	t      *translated
	grpc   bool
}

func checkRegex(what, re string) error {
	if len(re) > MaxRegexLen {
		return fmt.Errorf("%s: regular expression of %d bytes exceeds %d", what, len(re), MaxRegexLen)
	}
	p, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return fmt.Errorf("%s: invalid regular expression %q: %w", what, re, err)
	}
	prog, err := syntax.Compile(p.Simplify())
	if err != nil {
		return fmt.Errorf("%s: invalid regular expression %q: %w", what, re, err)
	}
	if len(prog.Inst) > MaxRegexInsts {
		return fmt.Errorf("%s: regular expression too large (%d instructions, limit %d)", what, len(prog.Inst), MaxRegexInsts)
	}
	return nil
}

func (c *converter) values(what string, vs []ValueSpec) ([]route.ValueMatch, error) {
	var out []route.ValueMatch
	for _, v := range vs {
		vm := route.ValueMatch{Name: v.Name, Value: v.Value}
		switch deref(v.Type, "Exact") {
		case "Exact":
		case "RegularExpression":
			if err := checkRegex(what+" "+v.Name, v.Value); err != nil {
				return nil, err
			}
			vm.Regex = true
		default:
			return nil, fmt.Errorf("%s %s: unsupported match type %q", what, v.Name, *v.Type)
		}
		out = append(out, vm)
	}
	return out, nil
}

func (c *converter) httpMatch(m MatchSpec) (route.HTTPMatch, error) {
	var hm route.HTTPMatch
	path := route.PathMatch{Kind: route.PathPrefix, Value: "/"}
	if m.Path != nil {
		path.Value = deref(m.Path.Value, "/")
		switch deref(m.Path.Type, "PathPrefix") {
		case "PathPrefix":
		case "Exact":
			path.Kind = route.PathExact
		case "RegularExpression":
			path.Kind = route.PathRegex
			if err := checkRegex("path", path.Value); err != nil {
				return hm, err
			}
		default:
			return hm, fmt.Errorf("path: unsupported match type %q", *m.Path.Type)
		}
		if path.Kind != route.PathRegex && !strings.HasPrefix(path.Value, "/") {
			return hm, fmt.Errorf("path %q must start with /", path.Value)
		}
	}
	hm.Path = &path
	var err error
	if hm.Headers, err = c.values("header", m.Headers); err != nil {
		return hm, err
	}
	if hm.Query, err = c.values("query parameter", m.QueryParams); err != nil {
		return hm, err
	}
	switch v := m.Method.(type) {
	case nil:
	case string:
		hm.Method = v
	default:
		return hm, fmt.Errorf("method: unsupported value %v", v)
	}
	return hm, nil
}

func (c *converter) grpcMatch(m MatchSpec) (route.GRPCMatch, error) {
	var gm route.GRPCMatch
	var err error
	if gm.Headers, err = c.values("header", m.Headers); err != nil {
		return gm, err
	}
	if m.Method == nil {
		return gm, nil
	}
	obj, ok := m.Method.(map[string]any)
	if !ok {
		return gm, fmt.Errorf("method: unsupported value %v", m.Method)
	}
	str := func(k string) string { s, _ := obj[k].(string); return s }
	gm.Service, gm.Method = str("service"), str("method")
	switch typ := str("type"); typ {
	case "", "Exact":
	case "RegularExpression":
		gm.Regex = true
		for _, re := range []string{gm.Service, gm.Method} {
			if err := checkRegex("method", re); err != nil {
				return gm, err
			}
		}
	default:
		return gm, fmt.Errorf("method: unsupported match type %q", typ)
	}
	return gm, nil
}

// backend converts a reference to a Service port; a reference of another
// kind is recorded (ResolvedRefs: InvalidKind) and kept with no authority.
func (c *converter) backend(ref BackendObjectRef, weight uint32) (route.Backend, error) {
	ns := deref(ref.Namespace, c.route.Namespace)
	b := route.Backend{Namespace: ns, Name: ref.Name, Weight: weight}
	if !isServiceRef(ref.Group, ref.Kind, "Service") {
		c.t.backends = append(c.t.backends, backendRef{Namespace: ns, Name: ref.Name,
			Kind: deref(ref.Group, "") + "/" + deref(ref.Kind, "")})
		return b, nil
	}
	if ref.Port == nil {
		return b, fmt.Errorf("backendRef %s: port is required for a Service", ref.Name)
	}
	if *ref.Port < 1 || *ref.Port > 65535 {
		return b, fmt.Errorf("backendRef %s: port %d out of range", ref.Name, *ref.Port)
	}
	b.Port = uint16(*ref.Port)
	b.Authority = fmt.Sprintf("%s.%s.svc.%s:%d", ref.Name, ns, c.domain, b.Port)
	c.t.backends = append(c.t.backends, backendRef{Namespace: ns, Name: ref.Name, Kind: "Service", Port: b.Port})
	return b, nil
}

func (c *converter) filters(fs []FilterSpec) ([]route.Filter, error) {
	var out []route.Filter
	for _, f := range fs {
		var rf route.Filter
		switch {
		case f.Type == "RequestHeaderModifier" && f.RequestHeaderModifier != nil:
			rf = route.Filter{Kind: route.RequestHeaderModifier, RequestHeaders: headerModifier(f.RequestHeaderModifier)}
		case f.Type == "ResponseHeaderModifier" && f.ResponseHeaderModifier != nil:
			rf = route.Filter{Kind: route.ResponseHeaderModifier, ResponseHeaders: headerModifier(f.ResponseHeaderModifier)}
		case f.Type == "RequestRedirect" && f.RequestRedirect != nil && !c.grpc:
			r := f.RequestRedirect
			rd := &route.Redirect{Scheme: deref(r.Scheme, ""), Hostname: deref(r.Hostname, ""), StatusCode: deref(r.StatusCode, 302)}
			if rd.StatusCode != 301 && rd.StatusCode != 302 {
				return nil, fmt.Errorf("RequestRedirect: unsupported status code %d", rd.StatusCode)
			}
			if r.Port != nil {
				if *r.Port < 1 || *r.Port > 65535 {
					return nil, fmt.Errorf("RequestRedirect: port %d out of range", *r.Port)
				}
				rd.Port = uint16(*r.Port)
			}
			var err error
			if rd.Path, err = pathModifier(r.Path); err != nil {
				return nil, fmt.Errorf("RequestRedirect: %w", err)
			}
			rf = route.Filter{Kind: route.RequestRedirect, Redirect: rd}
		case f.Type == "URLRewrite" && f.URLRewrite != nil && !c.grpc:
			p, err := pathModifier(f.URLRewrite.Path)
			if err != nil {
				return nil, fmt.Errorf("URLRewrite: %w", err)
			}
			rf = route.Filter{Kind: route.URLRewrite, Rewrite: &route.Rewrite{Hostname: deref(f.URLRewrite.Hostname, ""), Path: p}}
		case f.Type == "RequestMirror" && f.RequestMirror != nil:
			m := f.RequestMirror
			pct := 100.0
			switch {
			case m.Percent != nil:
				pct = float64(*m.Percent)
			case m.Fraction != nil:
				den := deref(m.Fraction.Denominator, 100)
				if den <= 0 || m.Fraction.Numerator < 0 || m.Fraction.Numerator > den {
					return nil, fmt.Errorf("RequestMirror: invalid fraction %d/%d", m.Fraction.Numerator, den)
				}
				pct = 100 * float64(m.Fraction.Numerator) / float64(den)
			}
			if pct < 0 || pct > 100 {
				return nil, fmt.Errorf("RequestMirror: percent %v out of range", pct)
			}
			b, err := c.backend(m.BackendRef, 1)
			if err != nil {
				return nil, fmt.Errorf("RequestMirror: %w", err)
			}
			if pct == 0 {
				continue // mirrors nothing
			}
			rf = route.Filter{Kind: route.RequestMirror, Mirror: &route.Mirror{Backend: b, Percent: pct}}
		default:
			return nil, fmt.Errorf("unsupported filter %q", f.Type)
		}
		out = append(out, rf)
	}
	return out, nil
}

func headerModifier(h *HeaderModifierSpec) *route.HeaderModifier {
	m := &route.HeaderModifier{Remove: h.Remove}
	for _, x := range h.Set {
		m.Set = append(m.Set, route.Header{Name: x.Name, Value: x.Value})
	}
	for _, x := range h.Add {
		m.Add = append(m.Add, route.Header{Name: x.Name, Value: x.Value})
	}
	return m
}

func pathModifier(p *PathModifierSpec) (*route.PathModifier, error) {
	if p == nil {
		return nil, nil
	}
	switch p.Type {
	case "ReplaceFullPath":
		return &route.PathModifier{Kind: route.ReplaceFullPath, Value: deref(p.ReplaceFullPath, "/")}, nil
	case "ReplacePrefixMatch":
		return &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: deref(p.ReplacePrefixMatch, "/")}, nil
	}
	return nil, fmt.Errorf("unsupported path modifier %q", p.Type)
}

func gatewayDuration(what string, s *string) (time.Duration, error) {
	if s == nil {
		return 0, nil
	}
	d, err := time.ParseDuration(*s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: invalid duration %q", what, *s)
	}
	return d, nil
}

// common converts what HTTP and gRPC rules share.
func (c *converter) common(rs RuleSpec) ([]route.Filter, []route.Backend, route.Timeouts, *route.Retry, error) {
	var to route.Timeouts
	fs, err := c.filters(rs.Filters)
	if err != nil {
		return nil, nil, to, nil, err
	}
	var bs []route.Backend
	for _, br := range rs.BackendRefs {
		w := deref(br.Weight, 1)
		if w < 0 {
			return nil, nil, to, nil, fmt.Errorf("backendRef %s: negative weight", br.Name)
		}
		b, err := c.backend(br.BackendObjectRef, uint32(w))
		if err != nil {
			return nil, nil, to, nil, err
		}
		if b.Filters, err = c.filters(br.Filters); err != nil {
			return nil, nil, to, nil, fmt.Errorf("backendRef %s: %w", br.Name, err)
		}
		bs = append(bs, b)
	}
	if rs.Timeouts != nil {
		if to.Request, err = gatewayDuration("timeouts.request", rs.Timeouts.Request); err != nil {
			return nil, nil, to, nil, err
		}
		if to.Backend, err = gatewayDuration("timeouts.backendRequest", rs.Timeouts.BackendRequest); err != nil {
			return nil, nil, to, nil, err
		}
		if to.Request > 0 && to.Backend > to.Request {
			return nil, nil, to, nil, fmt.Errorf("timeouts.backendRequest %s exceeds timeouts.request %s", to.Backend, to.Request)
		}
	}
	var retry *route.Retry
	if rs.Retry != nil {
		retry = &route.Retry{Limit: deref(rs.Retry.Attempts, 1)}
		for _, code := range rs.Retry.Codes {
			if code < 400 || code > 599 {
				return nil, nil, to, nil, fmt.Errorf("retry: code %d outside 400-599", code)
			}
			retry.HTTPStatuses = append(retry.HTTPStatuses, uint16(code))
		}
		if retry.Backoff, err = gatewayDuration("retry.backoff", rs.Retry.Backoff); err != nil {
			return nil, nil, to, nil, err
		}
	}
	if mirrorsOnly(fs, bs) {
		// Seed 003's shadow deployment gives its only backend weight 0
		// beside a RequestMirror filter and expects it to serve: with a
		// mirror, all-zero weights mean "split evenly" rather than the
		// Gateway API's 500 (docs/traffic.md).
		for i := range bs {
			bs[i].Weight = 1
		}
	}
	return fs, bs, to, retry, nil
}

// mirrorsOnly reports a rule whose backends all weigh 0 and that mirrors.
func mirrorsOnly(fs []route.Filter, bs []route.Backend) bool {
	if len(bs) == 0 {
		return false
	}
	for _, b := range bs {
		if b.Weight != 0 {
			return false
		}
	}
	for _, f := range fs {
		if f.Kind == route.RequestMirror {
			return true
		}
	}
	return false
}
