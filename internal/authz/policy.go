// Package authz is the proxy's inbound authorization engine: the data types
// of one port's inbound policy (its Server, authorizations, HTTP routes and
// rate limit, or a default policy such as all-unauthenticated or deny), the
// matcher that allows or denies a connection (TCP) or a request (HTTP), and
// the HTTPLocalRateLimitPolicy limiter. It knows nothing of Kubernetes: the
// control plane (internal/policy/inbound) computes policies from resources
// and the proxy only evaluates them.
package authz

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultPolicy is one of Linkerd's default inbound policy values
// (config.linkerd.io/default-inbound-policy, proxy.defaultInboundPolicy,
// and a Server's accessPolicy).
type DefaultPolicy string

// Linkerd's default inbound policies.
const (
	AllUnauthenticated     DefaultPolicy = "all-unauthenticated"
	AllAuthenticated       DefaultPolicy = "all-authenticated"
	ClusterUnauthenticated DefaultPolicy = "cluster-unauthenticated"
	ClusterAuthenticated   DefaultPolicy = "cluster-authenticated"
	Deny                   DefaultPolicy = "deny"
	Audit                  DefaultPolicy = "audit"
)

// DefaultPolicies lists every valid value.
var DefaultPolicies = []DefaultPolicy{AllUnauthenticated, AllAuthenticated, ClusterUnauthenticated, ClusterAuthenticated, Deny, Audit}

// ParseDefaultPolicy validates a default policy value ("" is all-unauthenticated).
func ParseDefaultPolicy(s string) (DefaultPolicy, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return AllUnauthenticated, nil
	}
	if slices.Contains(DefaultPolicies, DefaultPolicy(s)) {
		return DefaultPolicy(s), nil
	}
	return "", fmt.Errorf("unknown default inbound policy %q (want one of %s)", s, joinPolicies())
}

func joinPolicies() string {
	out := make([]string, len(DefaultPolicies))
	for i, p := range DefaultPolicies {
		out[i] = string(p)
	}
	return strings.Join(out, ", ")
}

// Meta names a policy resource in metric labels (group, kind, name).
type Meta struct {
	Group string
	Kind  string
	Name  string
}

// DefaultMeta is the Meta of something a default policy provides.
func DefaultMeta(name string) Meta { return Meta{Kind: "default", Name: name} }

// Protocol is a Server's proxyProtocol.
type Protocol string

// Linkerd's proxyProtocol values.
const (
	ProtocolUnknown Protocol = "unknown" // detect
	ProtocolHTTP1   Protocol = "HTTP/1"
	ProtocolHTTP2   Protocol = "HTTP/2"
	ProtocolGRPC    Protocol = "gRPC"
	ProtocolOpaque  Protocol = "opaque"
	ProtocolTLS     Protocol = "TLS"
)

// Network is a CIDR with exceptions (NetworkAuthentication's networks).
type Network struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Contains reports whether a is in the network and in none of its exceptions.
func (n Network) Contains(a netip.Addr) bool {
	a = a.Unmap()
	if !n.CIDR.Contains(a) {
		return false
	}
	for _, e := range n.Except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

// ParseNetwork parses a CIDR and its exceptions; a bare address is a host
// prefix.
func ParseNetwork(cidr string, except ...string) (Network, error) {
	p, err := parsePrefix(cidr)
	if err != nil {
		return Network{}, err
	}
	n := Network{CIDR: p}
	for _, e := range except {
		ep, err := parsePrefix(e)
		if err != nil {
			return Network{}, fmt.Errorf("except: %w", err)
		}
		n.Except = append(n.Except, ep)
	}
	return n, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %v", s, err)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %v", s, err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: IPv4-mapped IPv6 prefix", s)
	}
	return p.Masked(), nil
}

// ParseNetworks parses a comma-separated CIDR list (clusterNetworks).
func ParseNetworks(s string) ([]Network, error) {
	var out []Network
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		n, err := ParseNetwork(part)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// AllNetworks are every IPv4 and IPv6 address.
var AllNetworks = []Network{
	{CIDR: netip.MustParsePrefix("0.0.0.0/0")},
	{CIDR: netip.MustParsePrefix("::/0")},
}

// Authentication says what a client must prove.
type Authentication int

// Authentication kinds.
const (
	// Unauthenticated: anyone in the networks, with or without mTLS.
	Unauthenticated Authentication = iota
	// MeshTLS: an mTLS client whose identity matches Identities.
	MeshTLS
)

// Authorization admits clients: those in any of Networks (empty: all) that
// satisfy Authn.
type Authorization struct {
	Meta     Meta
	Networks []Network
	Authn    Authentication
	// Identities (MeshTLS): exact identities, "*" for any identity, or
	// "*.suffix" for identities ending in ".suffix".
	Identities []string
}

// ValidIdentity checks one MeshTLSAuthentication identity form.
func ValidIdentity(id string) error {
	switch {
	case id == "*":
		return nil
	case id == "":
		return fmt.Errorf("empty identity")
	case strings.HasPrefix(id, "*."):
		if len(id) == 2 || strings.Contains(id[2:], "*") {
			return fmt.Errorf("identity %q: want *.suffix with a non-empty suffix and no other wildcard", id)
		}
		return validDNSName(id[2:])
	case strings.Contains(id, "*"):
		return fmt.Errorf("identity %q: a wildcard is only allowed as \"*\" or a leading \"*.\"", id)
	}
	return validDNSName(id)
}

func validDNSName(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("identity %q: longer than 253 characters", s)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("identity %q: empty or over-long DNS label", s)
		}
		for i, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(label)-1
			if !ok {
				return fmt.Errorf("identity %q: %q is not a DNS label (lowercase letters, digits, inner hyphens)", s, label)
			}
		}
	}
	return nil
}

// PathMatch matches a request path (Gateway API: Exact, PathPrefix, RegularExpression).
type PathMatch struct {
	Kind  PathKind
	Value string
}

// PathKind is how a path is matched.
type PathKind int

// Path match kinds.
const (
	PathPrefix PathKind = iota
	PathExact
	PathRegex
)

// HeaderMatch matches one request header (exact or regular expression).
type HeaderMatch struct {
	Name  string
	Value string
	Regex bool
}

// RouteMatch is one of an HTTPRoute rule's matches: every set field must match.
type RouteMatch struct {
	Path    *PathMatch
	Method  string
	Headers []HeaderMatch
}

// Route is an HTTPRoute (policy.linkerd.io) whose parent is the Server,
// with the authorizations that target it.
type Route struct {
	Meta Meta
	// Matches: a request matching any of them is on the route; none
	// matches every request.
	Matches        []RouteMatch
	Authorizations []Authorization
}

// RateLimit is an HTTPLocalRateLimitPolicy on the Server.
type RateLimit struct {
	Meta Meta
	// Total bounds all requests to the Server, per second (0: unlimited).
	Total float64
	// Identity bounds each client identity's requests, per second (0: unlimited).
	Identity float64
	// Overrides give named clients their own per-identity limit.
	Overrides []RateOverride
}

// RateOverride is the per-identity limit of the listed client identities.
type RateOverride struct {
	Clients           []string
	RequestsPerSecond float64
}

// PortPolicy is the inbound policy of one port of the pod.
type PortPolicy struct {
	// Server names the Server selecting the port, or the default policy
	// (kind "default") when none does.
	Server   Meta
	Protocol Protocol
	// Authorizations apply to the whole Server: its TCP connections and
	// every HTTP route.
	Authorizations []Authorization
	// Default, when set, adds the authorizations of a default policy
	// (expanded with the proxy's cluster networks); Audit lets through
	// what nothing authorizes, counted as authz "audit".
	Default DefaultPolicy
	// Routes are the Server's HTTPRoutes; none means one default route
	// matching everything.
	Routes []Route
	// ProbePaths are the pod's HTTP probe paths on this port: GET on
	// them is allowed to anyone while the port has no explicit routes,
	// and never rate-limited.
	ProbePaths []string
	RateLimit  *RateLimit
}

// ForDefault is the policy of a port no Server selects.
func ForDefault(d DefaultPolicy, probePaths []string) *PortPolicy {
	return &PortPolicy{Server: DefaultMeta(string(d)), Protocol: ProtocolUnknown, Default: d, ProbePaths: probePaths}
}

// defaultAuthorizations expands a default policy.
func defaultAuthorizations(d DefaultPolicy, cluster []Network) []Authorization {
	m := DefaultMeta(string(d))
	switch d {
	case AllUnauthenticated:
		return []Authorization{{Meta: m, Networks: AllNetworks, Authn: Unauthenticated}}
	case AllAuthenticated:
		return []Authorization{{Meta: m, Networks: AllNetworks, Authn: MeshTLS, Identities: []string{"*"}}}
	case ClusterUnauthenticated:
		return []Authorization{{Meta: m, Networks: cluster, Authn: Unauthenticated}}
	case ClusterAuthenticated:
		return []Authorization{{Meta: m, Networks: cluster, Authn: MeshTLS, Identities: []string{"*"}}}
	}
	return nil
}

// RequireIdentity turns a default policy's unauthenticated access into
// authenticated access (config.linkerd.io/proxy-require-identity-inbound-ports).
func RequireIdentity(d DefaultPolicy) DefaultPolicy {
	switch d {
	case AllUnauthenticated:
		return AllAuthenticated
	case ClusterUnauthenticated:
		return ClusterAuthenticated
	}
	return d
}

// ParsePorts parses a comma-separated list of ports and ranges.
func ParsePorts(s string) (map[uint16]bool, error) {
	out := map[uint16]bool{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("port range %q is backwards", part)
			}
		}
		for p := int(a); p <= int(b); p++ {
			out[uint16(p)] = true
		}
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q (want 1-65535)", s)
	}
	return uint16(n), nil
}

// ParseProbes parses "PORT/PATH,PORT/PATH" (the probes the injector
// found in the pod spec) into paths per port.
func ParseProbes(s string) (map[uint16][]string, error) {
	out := map[uint16][]string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		ps, path, ok := strings.Cut(part, "/")
		if !ok {
			return nil, fmt.Errorf("probe %q: want PORT/PATH", part)
		}
		port, err := parsePort(ps)
		if err != nil {
			return nil, fmt.Errorf("probe %q: %w", part, err)
		}
		out[port] = append(out[port], "/"+path)
	}
	return out, nil
}

// Source gives the current policy of one of the pod's inbound ports.
type Source interface {
	Policy(port uint16) *Policy
}
