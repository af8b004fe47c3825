package authz

import "sync"

// StaticConfig is the proxy's own inbound policy configuration (from its
// environment): what applies to a port the control plane has said nothing
// about.
type StaticConfig struct {
	Default DefaultPolicy
	// RequireIdentity ports turn the default's unauthenticated access
	// into authenticated access.
	RequireIdentity map[uint16]bool
	Cluster         []Network
	// Probes are the pod's HTTP probe paths by port.
	Probes map[uint16][]string
}

// Static is a Source of default policies, compiled once per port.
type Static struct {
	cfg   StaticConfig
	mu    sync.Mutex
	ports map[uint16]*Policy
}

// NewStatic validates cfg and returns its Source.
func NewStatic(cfg StaticConfig) (*Static, error) {
	if cfg.Default == "" {
		cfg.Default = AllUnauthenticated
	}
	if _, err := ParseDefaultPolicy(string(cfg.Default)); err != nil {
		return nil, err
	}
	return &Static{cfg: cfg, ports: map[uint16]*Policy{}}, nil
}

// Config returns the configuration the Source was built from.
func (s *Static) Config() StaticConfig { return s.cfg }

// DefaultFor is the default policy of a port.
func (s *Static) DefaultFor(port uint16) DefaultPolicy {
	if s.cfg.RequireIdentity[port] {
		return RequireIdentity(s.cfg.Default)
	}
	return s.cfg.Default
}

// Policy returns the port's default policy.
func (s *Static) Policy(port uint16) *Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.ports[port]; p != nil {
		return p
	}
	p, err := Compile(ForDefault(s.DefaultFor(port), s.cfg.Probes[port]), s.cfg.Cluster)
	if err != nil {
		// A default policy always compiles; should it not, deny.
		p = &Policy{src: ForDefault(Deny, nil), probes: map[string]bool{}}
	}
	s.ports[port] = p
	return p
}
