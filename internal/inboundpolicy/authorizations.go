package inboundpolicy

import (
	"fmt"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/weftmesh/weft/internal/authz"
)

func metaOf(kind string, o *object) authz.Meta {
	return authz.Meta{Group: Group, Kind: strings.ToLower(kind), Name: o.Name}
}

func networksOf(specs []networkSpec) ([]authz.Network, error) {
	var out []authz.Network
	for _, n := range specs {
		nw, err := authz.ParseNetwork(n.CIDR, n.Except...)
		if err != nil {
			return nil, err
		}
		out = append(out, nw)
	}
	return out, nil
}

// meshTLS resolves a MeshTLSAuthentication to identity patterns.
func (x *Index) meshTLS(o *object) ([]string, error) {
	var spec meshTLSSpec
	if err := o.spec(&spec); err != nil {
		return nil, err
	}
	var ids []string
	for _, id := range spec.Identities {
		if err := authz.ValidIdentity(id); err != nil {
			return nil, fmt.Errorf("spec.identities: %v", err)
		}
		ids = append(ids, id)
	}
	for _, r := range spec.IdentityRefs {
		ns := r.Namespace
		if ns == "" {
			ns = o.Namespace
		}
		switch {
		case sameKind(r.Kind, KindServiceAccount) && r.Name == "*":
			ids = append(ids, "*."+ns+".serviceaccount.identity."+x.o.ControllerNamespace+"."+x.o.TrustDomain)
		case sameKind(r.Kind, KindServiceAccount) && r.Name != "":
			ids = append(ids, x.saIdentity(r.Name, ns))
		case sameKind(r.Kind, KindNamespace) && r.Name != "":
			ids = append(ids, "*."+r.Name+".serviceaccount.identity."+x.o.ControllerNamespace+"."+x.o.TrustDomain)
		default:
			return nil, fmt.Errorf("spec.identityRefs: unsupported reference %s %q (want ServiceAccount or Namespace)", r.Kind, r.Name)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no identities or identityRefs: it would authenticate nobody")
	}
	for _, id := range ids {
		if err := authz.ValidIdentity(id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func (x *Index) networkAuthn(o *object) ([]authz.Network, error) {
	var spec networkAuthnSpec
	if err := o.spec(&spec); err != nil {
		return nil, err
	}
	if len(spec.Networks) == 0 {
		return nil, fmt.Errorf("spec.networks is empty")
	}
	nets, err := networksOf(spec.Networks)
	if err != nil {
		return nil, fmt.Errorf("spec.networks: %v", err)
	}
	return nets, nil
}

// authzPolicy resolves an AuthorizationPolicy's required authentications.
// Any missing or invalid reference makes the whole policy unusable.
func (x *Index) authzPolicy(o *object) (authz.Authorization, authzPolicySpec, error) {
	var spec authzPolicySpec
	a := authz.Authorization{Meta: metaOf(KindAuthorizationPolicy, o)}
	if err := o.spec(&spec); err != nil {
		return a, spec, err
	}
	var ids []string
	for _, r := range spec.RequiredAuthenticationRefs {
		ns := r.Namespace
		if ns == "" {
			ns = o.Namespace
		}
		switch {
		case sameKind(r.Kind, KindMeshTLSAuthn) && policyGroup(r.Group):
			m := x.objs[KindMeshTLSAuthn][ns+"/"+r.Name]
			if m == nil {
				return a, spec, fmt.Errorf("MeshTLSAuthentication %s/%s not found", ns, r.Name)
			}
			got, err := x.meshTLS(m)
			if err != nil {
				return a, spec, fmt.Errorf("MeshTLSAuthentication %s/%s is invalid: %v", ns, r.Name, err)
			}
			ids = append(ids, got...)
		case sameKind(r.Kind, KindNetworkAuthn) && policyGroup(r.Group):
			n := x.objs[KindNetworkAuthn][ns+"/"+r.Name]
			if n == nil {
				return a, spec, fmt.Errorf("NetworkAuthentication %s/%s not found", ns, r.Name)
			}
			got, err := x.networkAuthn(n)
			if err != nil {
				return a, spec, fmt.Errorf("NetworkAuthentication %s/%s is invalid: %v", ns, r.Name, err)
			}
			// Several NetworkAuthentications: a client in any of their
			// networks (the union), as Linkerd's controller does.
			a.Networks = append(a.Networks, got...)
		case sameKind(r.Kind, KindServiceAccount) && r.Group == "":
			ids = append(ids, x.saIdentity(r.Name, ns))
		default:
			return a, spec, fmt.Errorf("requiredAuthenticationRefs: unsupported reference %s %q", r.Kind, r.Name)
		}
	}
	if len(ids) > 0 {
		a.Authn, a.Identities = authz.MeshTLS, ids
	}
	return a, spec, nil
}

// serverAuthz resolves a ServerAuthorization.
func (x *Index) serverAuthz(o *object) (authz.Authorization, serverAuthzSpec, error) {
	var spec serverAuthzSpec
	a := authz.Authorization{Meta: metaOf(KindServerAuthorization, o)}
	if err := o.spec(&spec); err != nil {
		return a, spec, err
	}
	if spec.Server.Name == "" && spec.Server.Selector == nil {
		return a, spec, fmt.Errorf("spec.server names no Server and has no selector")
	}
	nets, err := networksOf(spec.Client.Networks)
	if err != nil {
		return a, spec, fmt.Errorf("spec.client.networks: %v", err)
	}
	a.Networks = nets
	switch m := spec.Client.MeshTLS; {
	case spec.Client.Unauthenticated:
	case m != nil && m.UnauthenticatedTLS:
		a.Authn, a.Identities = authz.MeshTLS, []string{"*"}
	case m != nil:
		a.Authn = authz.MeshTLS
		for _, id := range m.Identities {
			if err := authz.ValidIdentity(id); err != nil {
				return a, spec, fmt.Errorf("spec.client.meshTLS.identities: %v", err)
			}
			a.Identities = append(a.Identities, id)
		}
		for _, sa := range m.ServiceAccounts {
			ns := sa.Namespace
			if ns == "" {
				ns = o.Namespace
			}
			a.Identities = append(a.Identities, x.saIdentity(sa.Name, ns))
		}
		if len(a.Identities) == 0 {
			return a, spec, fmt.Errorf("spec.client.meshTLS has no identities or serviceAccounts")
		}
	default:
		return a, spec, fmt.Errorf("spec.client needs unauthenticated or meshTLS")
	}
	return a, spec, nil
}

func (x *Index) serverAuthorizations(srv *object) []authz.Authorization {
	var out []authz.Authorization
	for _, o := range x.sorted(KindAuthorizationPolicy, srv.Namespace) {
		a, spec, err := x.authzPolicy(o)
		if err != nil {
			continue
		}
		t := spec.TargetRef
		if sameKind(t.Kind, KindServer) && policyGroup(t.Group) && t.Name == srv.Name ||
			sameKind(t.Kind, KindNamespace) && t.Group == "" && (t.Name == "" || t.Name == srv.Namespace) {
			out = append(out, a)
		}
	}
	for _, o := range x.sorted(KindServerAuthorization, srv.Namespace) {
		a, spec, err := x.serverAuthz(o)
		if err != nil {
			continue
		}
		if spec.Server.Name == srv.Name {
			out = append(out, a)
		} else if spec.Server.Name == "" && spec.Server.Selector != nil {
			if sel, err := metav1.LabelSelectorAsSelector(spec.Server.Selector); err == nil && sel.Matches(labels.Set(srv.Labels)) {
				out = append(out, a)
			}
		}
	}
	return out
}

// route converts an HTTPRoute whose parent is a Server, checking that it
// compiles.
func (x *Index) route(o *object) (authz.Route, httpRouteSpec, error) {
	var spec httpRouteSpec
	r := authz.Route{Meta: metaOf(KindHTTPRoute, o)}
	if err := o.spec(&spec); err != nil {
		return r, spec, err
	}
	for _, rule := range spec.Rules {
		if len(rule.Matches) == 0 {
			r.Matches = append(r.Matches, authz.RouteMatch{})
		}
		for _, m := range rule.Matches {
			am := authz.RouteMatch{Method: m.Method}
			if m.Method != "" && !validMethod(m.Method) {
				return r, spec, fmt.Errorf("method %q", m.Method)
			}
			if m.Path != nil {
				kind := authz.PathPrefix
				switch m.Path.Type {
				case "", "PathPrefix":
				case "Exact":
					kind = authz.PathExact
				case "RegularExpression":
					kind = authz.PathRegex
				default:
					return r, spec, fmt.Errorf("path match type %q (want Exact, PathPrefix or RegularExpression)", m.Path.Type)
				}
				v := m.Path.Value
				if v == "" {
					v = "/"
				}
				am.Path = &authz.PathMatch{Kind: kind, Value: v}
			}
			for _, h := range m.Headers {
				if h.Type != "" && h.Type != "Exact" && h.Type != "RegularExpression" {
					return r, spec, fmt.Errorf("header match type %q", h.Type)
				}
				am.Headers = append(am.Headers, authz.HeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Type == "RegularExpression"})
			}
			r.Matches = append(r.Matches, am)
		}
	}
	for _, ap := range x.sorted(KindAuthorizationPolicy, o.Namespace) {
		a, aspec, err := x.authzPolicy(ap)
		if err == nil && sameKind(aspec.TargetRef.Kind, KindHTTPRoute) && policyGroup(aspec.TargetRef.Group) && aspec.TargetRef.Name == o.Name {
			r.Authorizations = append(r.Authorizations, a)
		}
	}
	if _, err := authz.Compile(&authz.PortPolicy{Routes: []authz.Route{r}}, nil); err != nil {
		return r, spec, err
	}
	return r, spec, nil
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func parentIsServer(spec httpRouteSpec, name string) bool {
	for _, p := range spec.ParentRefs {
		if sameKind(p.Kind, KindServer) && policyGroup(p.Group) && (name == "" || p.Name == name) {
			return true
		}
	}
	return false
}

// routesFor lists the Server's routes. An invalid route is replaced by a
// catch-all route nothing authorizes beyond the Server-wide
// authorizations: requests it was meant to restrict stay restricted.
func (x *Index) routesFor(srv *object) []authz.Route {
	var out []authz.Route
	for _, o := range x.sorted(KindHTTPRoute, srv.Namespace) {
		var spec httpRouteSpec
		if err := o.spec(&spec); err != nil || !parentIsServer(spec, srv.Name) {
			continue
		}
		r, _, err := x.route(o)
		if err != nil {
			return []authz.Route{{Meta: metaOf(KindHTTPRoute, o)}}
		}
		out = append(out, r)
	}
	return out
}

func (x *Index) rateLimit(o *object) (*authz.RateLimit, rateLimitSpec, error) {
	var spec rateLimitSpec
	if err := o.spec(&spec); err != nil {
		return nil, spec, err
	}
	rl := &authz.RateLimit{Meta: metaOf(KindRateLimitPolicy, o)}
	if spec.Total != nil {
		rl.Total = spec.Total.RequestsPerSecond
	}
	if spec.Identity != nil {
		rl.Identity = spec.Identity.RequestsPerSecond
	}
	for _, ov := range spec.Overrides {
		o2 := authz.RateOverride{RequestsPerSecond: ov.RequestsPerSecond}
		for _, c := range ov.ClientRefs {
			if !sameKind(c.Kind, KindServiceAccount) || c.Name == "" {
				return nil, spec, fmt.Errorf("overrides: unsupported client reference %s %q (want ServiceAccount)", c.Kind, c.Name)
			}
			ns := c.Namespace
			if ns == "" {
				ns = o.Namespace
			}
			o2.Clients = append(o2.Clients, x.saIdentity(c.Name, ns))
		}
		rl.Overrides = append(rl.Overrides, o2)
	}
	if _, err := authz.NewLimiter(*rl); err != nil {
		return nil, spec, err
	}
	return rl, spec, nil
}

func (x *Index) rateLimitFor(srv *object) *authz.RateLimit {
	for _, o := range x.sorted(KindRateLimitPolicy, srv.Namespace) {
		rl, spec, err := x.rateLimit(o)
		if err == nil && sameKind(spec.TargetRef.Kind, KindServer) && spec.TargetRef.Name == srv.Name {
			return rl
		}
	}
	return nil
}

// Problem is a resource the index cannot use (or not fully), and why.
type Problem struct {
	Kind, Namespace, Name string
	Message               string
	Object                *unstructured.Unstructured
}

// Problems validates every policy resource.
func (x *Index) Problems() []Problem {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []Problem
	add := func(o *object, format string, args ...any) {
		out = append(out, Problem{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Message: fmt.Sprintf(format, args...), Object: o.raw})
	}
	server := func(ns, name string) bool { return x.objs[KindServer][ns+"/"+name] != nil }
	for _, o := range x.sorted(KindServer, "") {
		if _, _, err := checkServer(o); err != nil {
			add(o, "invalid Server: %v", err)
		}
	}
	for _, o := range x.sorted(KindServerAuthorization, "") {
		_, spec, err := x.serverAuthz(o)
		switch {
		case err != nil:
			add(o, "invalid ServerAuthorization (ignored: it authorizes nobody): %v", err)
		case spec.Server.Name != "" && !server(o.Namespace, spec.Server.Name):
			add(o, "Server %s/%s not found", o.Namespace, spec.Server.Name)
		}
	}
	for _, o := range x.sorted(KindAuthorizationPolicy, "") {
		_, spec, err := x.authzPolicy(o)
		t := spec.TargetRef
		switch {
		case err != nil:
			add(o, "invalid AuthorizationPolicy (ignored: it authorizes nobody): %v", err)
		case sameKind(t.Kind, KindServer) && !server(o.Namespace, t.Name):
			add(o, "target Server %s/%s not found", o.Namespace, t.Name)
		case sameKind(t.Kind, KindHTTPRoute) && x.objs[KindHTTPRoute][o.Namespace+"/"+t.Name] == nil:
			add(o, "target HTTPRoute %s/%s not found", o.Namespace, t.Name)
		case !sameKind(t.Kind, KindServer) && !sameKind(t.Kind, KindHTTPRoute) && !sameKind(t.Kind, KindNamespace):
			add(o, "unsupported targetRef kind %q (want Server, HTTPRoute or Namespace)", t.Kind)
		}
	}
	for _, o := range x.sorted(KindMeshTLSAuthn, "") {
		if _, err := x.meshTLS(o); err != nil {
			add(o, "invalid MeshTLSAuthentication (policies using it authorize nobody): %v", err)
		}
	}
	for _, o := range x.sorted(KindNetworkAuthn, "") {
		if _, err := x.networkAuthn(o); err != nil {
			add(o, "invalid NetworkAuthentication (policies using it authorize nobody): %v", err)
		}
	}
	for _, o := range x.sorted(KindHTTPRoute, "") {
		var spec httpRouteSpec
		if o.spec(&spec) != nil || !parentIsServer(spec, "") {
			continue // a route for Services: the outbound side's concern
		}
		if _, _, err := x.route(o); err != nil {
			add(o, "invalid HTTPRoute (its Server then authorizes nothing beyond Server-wide authorizations): %v", err)
		}
		for _, p := range spec.ParentRefs {
			if sameKind(p.Kind, KindServer) && !server(o.Namespace, p.Name) {
				add(o, "parent Server %s/%s not found", o.Namespace, p.Name)
			}
		}
	}
	for _, o := range x.sorted(KindRateLimitPolicy, "") {
		_, spec, err := x.rateLimit(o)
		switch {
		case err != nil:
			add(o, "invalid HTTPLocalRateLimitPolicy (not applied): %v", err)
		case !sameKind(spec.TargetRef.Kind, KindServer) || !server(o.Namespace, spec.TargetRef.Name):
			add(o, "target Server %s/%s not found", o.Namespace, spec.TargetRef.Name)
		}
	}
	return out
}

// UnusedServers lists Servers that select no known pod.
func (x *Index) UnusedServers() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	for _, o := range x.sorted(KindServer, "") {
		if !x.serverSelectsPods(o) {
			out = append(out, o.key())
		}
	}
	return out
}
