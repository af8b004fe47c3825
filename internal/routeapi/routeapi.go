// Package routeapi converts an outbound routing table (internal/route)
// to and from the policy API's wire messages (api/policy/v1): the policy
// controller encodes, the proxy decodes. It imports no Kubernetes package,
// so the proxy can use it.
package routeapi

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/route"
)

// Encode returns t's wire form; a nil table is "not found".
func Encode(t *route.Table) *policyv1.OutboundPolicy {
	if t == nil {
		return &policyv1.OutboundPolicy{}
	}
	p := &policyv1.OutboundPolicy{
		Found: true,
		Parent: &policyv1.ParentRef{Namespace: t.Parent.Namespace, Name: t.Parent.Name,
			Port: uint32(t.Parent.Port), Authority: t.Parent.Authority},
		Defaults: encodePolicy(t.Defaults),
	}
	for _, r := range t.HTTP {
		hr := &policyv1.HttpRoute{Meta: encodeMeta(r.Meta), Hostnames: r.Hostnames, Policy: encodePolicy(r.Policy)}
		for _, rule := range r.Rules {
			w := &policyv1.HttpRule{Filters: encodeFilters(rule.Filters), Backends: encodeBackends(rule.Backends),
				Timeouts: encodeTimeouts(rule.Timeouts), Retry: encodeRetry(rule.Retry)}
			for _, m := range rule.Matches {
				wm := &policyv1.HttpMatch{Headers: encodeValues(m.Headers), Query: encodeValues(m.Query), Method: m.Method}
				if m.Path != nil {
					wm.Path = &policyv1.PathMatch{Kind: encodePathKind(m.Path.Kind), Value: m.Path.Value}
				}
				w.Matches = append(w.Matches, wm)
			}
			hr.Rules = append(hr.Rules, w)
		}
		p.HttpRoutes = append(p.HttpRoutes, hr)
	}
	for _, r := range t.GRPC {
		gr := &policyv1.GrpcRoute{Meta: encodeMeta(r.Meta), Hostnames: r.Hostnames, Policy: encodePolicy(r.Policy)}
		for _, rule := range r.Rules {
			w := &policyv1.GrpcRule{Filters: encodeFilters(rule.Filters), Backends: encodeBackends(rule.Backends),
				Timeouts: encodeTimeouts(rule.Timeouts), Retry: encodeRetry(rule.Retry)}
			for _, m := range rule.Matches {
				w.Matches = append(w.Matches, &policyv1.GrpcMatch{Service: m.Service, Method: m.Method, Regex: m.Regex,
					Headers: encodeValues(m.Headers)})
			}
			gr.Rules = append(gr.Rules, w)
		}
		p.GrpcRoutes = append(p.GrpcRoutes, gr)
	}
	if a := t.Accrual; a != nil {
		p.FailureAccrual = &policyv1.FailureAccrual{MaxFailures: uint32(max(a.MaxFailures, 0)),
			MinPenalty: dur(a.MinPenalty), MaxPenalty: dur(a.MaxPenalty), JitterRatio: a.JitterRatio}
	}
	return p
}

func dur(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func encodeMeta(m route.Meta) *policyv1.RouteMeta {
	w := &policyv1.RouteMeta{Group: m.Group, Kind: m.Kind, Namespace: m.Namespace, Name: m.Name}
	if !m.Created.IsZero() {
		w.Created = timestamppb.New(m.Created)
	}
	return w
}

func encodePolicy(p route.Policy) *policyv1.RoutePolicy {
	if p.Timeouts == (route.Timeouts{}) && p.Retry == nil {
		return nil
	}
	return &policyv1.RoutePolicy{Timeouts: encodeTimeouts(p.Timeouts), Retry: encodeRetry(p.Retry)}
}

func encodeTimeouts(t route.Timeouts) *policyv1.Timeouts {
	if t == (route.Timeouts{}) {
		return nil
	}
	return &policyv1.Timeouts{Request: dur(t.Request), Backend: dur(t.Backend), Idle: dur(t.Idle)}
}

func encodeRetry(r *route.Retry) *policyv1.Retry {
	if r == nil {
		return nil
	}
	w := &policyv1.Retry{GrpcCodes: r.GRPCCodes, Limit: uint32(max(r.Limit, 0)), Timeout: dur(r.Timeout), Backoff: dur(r.Backoff)}
	for _, s := range r.HTTPStatuses {
		w.HttpStatuses = append(w.HttpStatuses, uint32(s))
	}
	return w
}

func encodeValues(vs []route.ValueMatch) []*policyv1.ValueMatch {
	var out []*policyv1.ValueMatch
	for _, v := range vs {
		out = append(out, &policyv1.ValueMatch{Name: v.Name, Value: v.Value, Regex: v.Regex})
	}
	return out
}

func encodePathKind(k route.PathKind) policyv1.PathMatch_Kind {
	switch k {
	case route.PathExact:
		return policyv1.PathMatch_EXACT
	case route.PathRegex:
		return policyv1.PathMatch_REGEX
	}
	return policyv1.PathMatch_PREFIX
}

func encodeBackend(b route.Backend) *policyv1.Backend {
	return &policyv1.Backend{Namespace: b.Namespace, Name: b.Name, Port: uint32(b.Port), Authority: b.Authority,
		Weight: b.Weight, Filters: encodeFilters(b.Filters)}
}

func encodeBackends(bs []route.Backend) []*policyv1.Backend {
	var out []*policyv1.Backend
	for _, b := range bs {
		out = append(out, encodeBackend(b))
	}
	return out
}

func encodeHeaders(m *route.HeaderModifier) *policyv1.HeaderModifier {
	w := &policyv1.HeaderModifier{Remove: m.Remove}
	for _, h := range m.Set {
		w.Set = append(w.Set, &policyv1.Header{Name: h.Name, Value: h.Value})
	}
	for _, h := range m.Add {
		w.Add = append(w.Add, &policyv1.Header{Name: h.Name, Value: h.Value})
	}
	return w
}

func encodePathModifier(p *route.PathModifier) *policyv1.PathModifier {
	if p == nil {
		return nil
	}
	return &policyv1.PathModifier{Kind: policyv1.PathModifier_Kind(p.Kind), Value: p.Value}
}

func encodeFilters(fs []route.Filter) []*policyv1.Filter {
	var out []*policyv1.Filter
	for _, f := range fs {
		var w *policyv1.Filter
		switch {
		case f.Kind == route.RequestHeaderModifier && f.RequestHeaders != nil:
			w = &policyv1.Filter{Kind: &policyv1.Filter_RequestHeaderModifier{RequestHeaderModifier: encodeHeaders(f.RequestHeaders)}}
		case f.Kind == route.ResponseHeaderModifier && f.ResponseHeaders != nil:
			w = &policyv1.Filter{Kind: &policyv1.Filter_ResponseHeaderModifier{ResponseHeaderModifier: encodeHeaders(f.ResponseHeaders)}}
		case f.Kind == route.RequestRedirect && f.Redirect != nil:
			r := f.Redirect
			w = &policyv1.Filter{Kind: &policyv1.Filter_RequestRedirect{RequestRedirect: &policyv1.Redirect{Scheme: r.Scheme,
				Hostname: r.Hostname, Path: encodePathModifier(r.Path), Port: uint32(r.Port), StatusCode: uint32(max(r.StatusCode, 0))}}}
		case f.Kind == route.URLRewrite && f.Rewrite != nil:
			w = &policyv1.Filter{Kind: &policyv1.Filter_UrlRewrite{UrlRewrite: &policyv1.Rewrite{Hostname: f.Rewrite.Hostname,
				Path: encodePathModifier(f.Rewrite.Path)}}}
		case f.Kind == route.RequestMirror && f.Mirror != nil:
			w = &policyv1.Filter{Kind: &policyv1.Filter_RequestMirror{RequestMirror: &policyv1.Mirror{
				Backend: encodeBackend(f.Mirror.Backend), Percent: f.Mirror.Percent}}}
		default:
			continue
		}
		out = append(out, w)
	}
	return out
}

// Decode returns the table of a wire message: nil when the target is not
// a Service port. A message the proxy cannot use whole (a value out of
// range, a filter of an unknown kind) is an error: the caller keeps the
// table it has.
func Decode(p *policyv1.OutboundPolicy) (*route.Table, error) {
	if !p.GetFound() {
		return nil, nil
	}
	port, err := port16(p.GetParent().GetPort())
	if err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	t := &route.Table{
		Parent: route.Parent{Namespace: p.GetParent().GetNamespace(), Name: p.GetParent().GetName(), Port: port,
			Authority: p.GetParent().GetAuthority()},
	}
	if t.Defaults, err = decodePolicy(p.GetDefaults()); err != nil {
		return nil, fmt.Errorf("defaults: %w", err)
	}
	for _, hr := range p.GetHttpRoutes() {
		r := route.HTTPRoute{Meta: decodeMeta(hr.GetMeta()), Hostnames: hr.GetHostnames()}
		if r.Policy, err = decodePolicy(hr.GetPolicy()); err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
		}
		for _, w := range hr.GetRules() {
			rule := route.HTTPRule{Timeouts: decodeTimeouts(w.GetTimeouts())}
			if rule.Retry, err = decodeRetry(w.GetRetry()); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			if rule.Filters, err = decodeFilters(w.GetFilters()); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			if rule.Backends, err = decodeBackends(w.GetBackends()); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			for _, m := range w.GetMatches() {
				hm := route.HTTPMatch{Headers: decodeValues(m.GetHeaders()), Query: decodeValues(m.GetQuery()), Method: m.GetMethod()}
				if pm := m.GetPath(); pm != nil {
					k, err := decodePathKind(pm.GetKind())
					if err != nil {
						return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
					}
					hm.Path = &route.PathMatch{Kind: k, Value: pm.GetValue()}
				}
				rule.Matches = append(rule.Matches, hm)
			}
			r.Rules = append(r.Rules, rule)
		}
		t.HTTP = append(t.HTTP, r)
	}
	for _, gr := range p.GetGrpcRoutes() {
		r := route.GRPCRoute{Meta: decodeMeta(gr.GetMeta()), Hostnames: gr.GetHostnames()}
		if r.Policy, err = decodePolicy(gr.GetPolicy()); err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
		}
		for _, w := range gr.GetRules() {
			rule := route.GRPCRule{Timeouts: decodeTimeouts(w.GetTimeouts())}
			if rule.Retry, err = decodeRetry(w.GetRetry()); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			if rule.Filters, err = decodeFilters(w.GetFilters()); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			if rule.Backends, err = decodeBackends(w.GetBackends()); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Meta.Name, err)
			}
			for _, m := range w.GetMatches() {
				rule.Matches = append(rule.Matches, route.GRPCMatch{Service: m.GetService(), Method: m.GetMethod(),
					Regex: m.GetRegex(), Headers: decodeValues(m.GetHeaders())})
			}
			r.Rules = append(r.Rules, rule)
		}
		t.GRPC = append(t.GRPC, r)
	}
	if a := p.GetFailureAccrual(); a != nil {
		if a.GetMaxFailures() > math.MaxInt32 || a.GetJitterRatio() < 0 || a.GetJitterRatio() > 100 || math.IsNaN(a.GetJitterRatio()) {
			return nil, fmt.Errorf("failure accrual out of range: %v", a)
		}
		t.Accrual = &route.FailureAccrual{MaxFailures: int(a.GetMaxFailures()), MinPenalty: a.GetMinPenalty().AsDuration(),
			MaxPenalty: a.GetMaxPenalty().AsDuration(), JitterRatio: a.GetJitterRatio()}
	}
	return t, nil
}

func port16(p uint32) (uint16, error) {
	if p > math.MaxUint16 {
		return 0, fmt.Errorf("port %d out of range", p)
	}
	return uint16(p), nil
}

func decodeMeta(m *policyv1.RouteMeta) route.Meta {
	r := route.Meta{Group: m.GetGroup(), Kind: m.GetKind(), Namespace: m.GetNamespace(), Name: m.GetName()}
	if m.GetCreated() != nil {
		r.Created = m.GetCreated().AsTime()
	}
	return r
}

func decodePolicy(p *policyv1.RoutePolicy) (route.Policy, error) {
	r, err := decodeRetry(p.GetRetry())
	return route.Policy{Timeouts: decodeTimeouts(p.GetTimeouts()), Retry: r}, err
}

func decodeTimeouts(t *policyv1.Timeouts) route.Timeouts {
	d := func(x *durationpb.Duration) time.Duration {
		if x == nil {
			return 0
		}
		return max(x.AsDuration(), 0)
	}
	return route.Timeouts{Request: d(t.GetRequest()), Backend: d(t.GetBackend()), Idle: d(t.GetIdle())}
}

func decodeRetry(w *policyv1.Retry) (*route.Retry, error) {
	if w == nil {
		return nil, nil
	}
	r := &route.Retry{GRPCCodes: w.GetGrpcCodes(), Limit: int(w.GetLimit()), Timeout: max(w.GetTimeout().AsDuration(), 0),
		Backoff: max(w.GetBackoff().AsDuration(), 0)}
	for _, s := range w.GetHttpStatuses() {
		if s < 100 || s > 599 {
			return nil, fmt.Errorf("retry status %d out of range", s)
		}
		r.HTTPStatuses = append(r.HTTPStatuses, uint16(s))
	}
	return r, nil
}

func decodeValues(ws []*policyv1.ValueMatch) []route.ValueMatch {
	var out []route.ValueMatch
	for _, w := range ws {
		out = append(out, route.ValueMatch{Name: w.GetName(), Value: w.GetValue(), Regex: w.GetRegex()})
	}
	return out
}

func decodePathKind(k policyv1.PathMatch_Kind) (route.PathKind, error) {
	switch k {
	case policyv1.PathMatch_PREFIX:
		return route.PathPrefix, nil
	case policyv1.PathMatch_EXACT:
		return route.PathExact, nil
	case policyv1.PathMatch_REGEX:
		return route.PathRegex, nil
	}
	return 0, fmt.Errorf("unknown path match kind %d", k)
}

func decodeBackend(w *policyv1.Backend) (route.Backend, error) {
	port, err := port16(w.GetPort())
	if err != nil {
		return route.Backend{}, fmt.Errorf("backend %s: %w", w.GetName(), err)
	}
	fs, err := decodeFilters(w.GetFilters())
	if err != nil {
		return route.Backend{}, fmt.Errorf("backend %s: %w", w.GetName(), err)
	}
	return route.Backend{Namespace: w.GetNamespace(), Name: w.GetName(), Port: port, Authority: w.GetAuthority(),
		Weight: w.GetWeight(), Filters: fs}, nil
}

func decodeBackends(ws []*policyv1.Backend) ([]route.Backend, error) {
	var out []route.Backend
	for _, w := range ws {
		b, err := decodeBackend(w)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func decodeHeaders(w *policyv1.HeaderModifier) *route.HeaderModifier {
	m := &route.HeaderModifier{Remove: w.GetRemove()}
	for _, h := range w.GetSet() {
		m.Set = append(m.Set, route.Header{Name: h.GetName(), Value: h.GetValue()})
	}
	for _, h := range w.GetAdd() {
		m.Add = append(m.Add, route.Header{Name: h.GetName(), Value: h.GetValue()})
	}
	return m
}

func decodePathModifier(w *policyv1.PathModifier) (*route.PathModifier, error) {
	if w == nil {
		return nil, nil
	}
	switch w.GetKind() {
	case policyv1.PathModifier_REPLACE_FULL_PATH:
		return &route.PathModifier{Kind: route.ReplaceFullPath, Value: w.GetValue()}, nil
	case policyv1.PathModifier_REPLACE_PREFIX_MATCH:
		return &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: w.GetValue()}, nil
	}
	return nil, fmt.Errorf("unknown path modifier kind %d", w.GetKind())
}

func decodeFilters(ws []*policyv1.Filter) ([]route.Filter, error) {
	var out []route.Filter
	for _, w := range ws {
		var f route.Filter
		switch k := w.GetKind().(type) {
		case *policyv1.Filter_RequestHeaderModifier:
			f = route.Filter{Kind: route.RequestHeaderModifier, RequestHeaders: decodeHeaders(k.RequestHeaderModifier)}
		case *policyv1.Filter_ResponseHeaderModifier:
			f = route.Filter{Kind: route.ResponseHeaderModifier, ResponseHeaders: decodeHeaders(k.ResponseHeaderModifier)}
		case *policyv1.Filter_RequestRedirect:
			r := k.RequestRedirect
			p, err := decodePathModifier(r.GetPath())
			if err != nil {
				return nil, err
			}
			port, err := port16(r.GetPort())
			if err != nil {
				return nil, fmt.Errorf("redirect: %w", err)
			}
			f = route.Filter{Kind: route.RequestRedirect, Redirect: &route.Redirect{Scheme: r.GetScheme(), Hostname: r.GetHostname(),
				Path: p, Port: port, StatusCode: int(r.GetStatusCode())}}
		case *policyv1.Filter_UrlRewrite:
			p, err := decodePathModifier(k.UrlRewrite.GetPath())
			if err != nil {
				return nil, err
			}
			f = route.Filter{Kind: route.URLRewrite, Rewrite: &route.Rewrite{Hostname: k.UrlRewrite.GetHostname(), Path: p}}
		case *policyv1.Filter_RequestMirror:
			b, err := decodeBackend(k.RequestMirror.GetBackend())
			if err != nil {
				return nil, fmt.Errorf("mirror: %w", err)
			}
			pct := k.RequestMirror.GetPercent()
			if !(pct > 0 && pct <= 100) {
				return nil, fmt.Errorf("mirror percent %v out of range", pct)
			}
			f = route.Filter{Kind: route.RequestMirror, Mirror: &route.Mirror{Backend: b, Percent: pct}}
		default:
			return nil, fmt.Errorf("filter of unknown kind %T", w.GetKind())
		}
		out = append(out, f)
	}
	return out, nil
}
