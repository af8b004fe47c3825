// Package policyclient is the proxy's side of the policy controller's
// InboundPolicies service: it watches the policy of each inbound port the
// proxy serves, on first use, and gives the authorization engine
// (internal/authz) the latest policy that compiled, keeping it while the
// control plane is unreachable. It also holds the conversions between
// authz's types and the API's messages, shared with the controller.
package policyclient

import (
	"fmt"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
)

// ToProto encodes a port policy.
func ToProto(p *authz.PortPolicy) *policyv1.InboundPolicy {
	out := &policyv1.InboundPolicy{Server: metaTo(p.Server), Protocol: string(p.Protocol), DefaultPolicy: string(p.Default),
		ProbePaths: p.ProbePaths, Authorizations: authzTo(p.Authorizations)}
	for _, r := range p.Routes {
		pr := &policyv1.InboundRoute{Meta: metaTo(r.Meta), Authorizations: authzTo(r.Authorizations)}
		for _, m := range r.Matches {
			pm := &policyv1.InboundRouteMatch{Method: m.Method}
			if m.Path != nil {
				pm.Path = &policyv1.InboundPathMatch{Kind: policyv1.InboundPathMatch_Kind(m.Path.Kind), Value: m.Path.Value}
			}
			for _, h := range m.Headers {
				pm.Headers = append(pm.Headers, &policyv1.InboundHeaderMatch{Name: h.Name, Value: h.Value, Regex: h.Regex})
			}
			pr.Matches = append(pr.Matches, pm)
		}
		out.Routes = append(out.Routes, pr)
	}
	if rl := p.RateLimit; rl != nil {
		out.RateLimit = &policyv1.InboundRateLimit{Meta: metaTo(rl.Meta), TotalRps: rl.Total, IdentityRps: rl.Identity}
		for _, o := range rl.Overrides {
			out.RateLimit.Overrides = append(out.RateLimit.Overrides, &policyv1.InboundRateLimit_Override{Clients: o.Clients, Rps: o.RequestsPerSecond})
		}
	}
	return out
}

// FromProto decodes a port policy; anything malformed is an error (the
// policy is then not used at all).
func FromProto(m *policyv1.InboundPolicy) (*authz.PortPolicy, error) {
	d := authz.DefaultPolicy(m.GetDefaultPolicy())
	if d != "" {
		if _, err := authz.ParseDefaultPolicy(string(d)); err != nil {
			return nil, err
		}
	}
	p := &authz.PortPolicy{Server: metaFrom(m.GetServer()), Protocol: authz.Protocol(m.GetProtocol()), Default: d, ProbePaths: m.GetProbePaths()}
	var err error
	if p.Authorizations, err = authzFrom(m.GetAuthorizations()); err != nil {
		return nil, err
	}
	for _, r := range m.GetRoutes() {
		ar := authz.Route{Meta: metaFrom(r.GetMeta())}
		if ar.Authorizations, err = authzFrom(r.GetAuthorizations()); err != nil {
			return nil, fmt.Errorf("route %s: %w", r.GetMeta().GetName(), err)
		}
		for _, rm := range r.GetMatches() {
			am := authz.RouteMatch{Method: rm.GetMethod()}
			if pm := rm.GetPath(); pm != nil {
				if pm.GetKind() > policyv1.InboundPathMatch_INBOUND_REGEX {
					return nil, fmt.Errorf("route %s: unknown path match kind %d", r.GetMeta().GetName(), pm.GetKind())
				}
				am.Path = &authz.PathMatch{Kind: authz.PathKind(pm.GetKind()), Value: pm.GetValue()}
			}
			for _, h := range rm.GetHeaders() {
				am.Headers = append(am.Headers, authz.HeaderMatch{Name: h.GetName(), Value: h.GetValue(), Regex: h.GetRegex()})
			}
			ar.Matches = append(ar.Matches, am)
		}
		p.Routes = append(p.Routes, ar)
	}
	if rl := m.GetRateLimit(); rl != nil {
		p.RateLimit = &authz.RateLimit{Meta: metaFrom(rl.GetMeta()), Total: rl.GetTotalRps(), Identity: rl.GetIdentityRps()}
		for _, o := range rl.GetOverrides() {
			p.RateLimit.Overrides = append(p.RateLimit.Overrides, authz.RateOverride{Clients: o.GetClients(), RequestsPerSecond: o.GetRps()})
		}
	}
	return p, nil
}

func metaTo(m authz.Meta) *policyv1.InboundMeta {
	return &policyv1.InboundMeta{Group: m.Group, Kind: m.Kind, Name: m.Name}
}

func metaFrom(m *policyv1.InboundMeta) authz.Meta {
	return authz.Meta{Group: m.GetGroup(), Kind: m.GetKind(), Name: m.GetName()}
}

func authzTo(as []authz.Authorization) []*policyv1.InboundAuthorization {
	var out []*policyv1.InboundAuthorization
	for _, a := range as {
		pa := &policyv1.InboundAuthorization{Meta: metaTo(a.Meta), MeshTls: a.Authn == authz.MeshTLS, Identities: a.Identities}
		for _, n := range a.Networks {
			pn := &policyv1.InboundNetwork{Cidr: n.CIDR.String()}
			for _, e := range n.Except {
				pn.Except = append(pn.Except, e.String())
			}
			pa.Networks = append(pa.Networks, pn)
		}
		out = append(out, pa)
	}
	return out
}

func authzFrom(as []*policyv1.InboundAuthorization) ([]authz.Authorization, error) {
	var out []authz.Authorization
	for _, pa := range as {
		a := authz.Authorization{Meta: metaFrom(pa.GetMeta()), Identities: pa.GetIdentities()}
		if pa.GetMeshTls() {
			a.Authn = authz.MeshTLS
		}
		for _, pn := range pa.GetNetworks() {
			n, err := authz.ParseNetwork(pn.GetCidr(), pn.GetExcept()...)
			if err != nil {
				return nil, fmt.Errorf("authorization %s: %w", a.Meta.Name, err)
			}
			a.Networks = append(a.Networks, n)
		}
		if len(pa.GetNetworks()) > 0 && len(a.Networks) == 0 {
			return nil, fmt.Errorf("authorization %s: no usable network", a.Meta.Name)
		}
		out = append(out, a)
	}
	return out, nil
}
