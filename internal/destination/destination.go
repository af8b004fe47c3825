// Package destination serves service discovery to proxies: for a target (a
// service authority or an IP:port) it streams the endpoint set as
// incremental add/remove updates, with an explicit "no endpoints" state,
// and the target's profile (opaque ports, routes). Sources plug in
// behind the Backend interface: a file registry for hosts without
// Kubernetes, and informers for clusters.
package destination

import (
	"maps"
	"slices"
	"time"
)

// Protocol hints how a proxy should talk to an endpoint.
type Protocol int

const (
	ProtocolUnknown Protocol = iota // not known to run a Weft proxy
	ProtocolProxy                   // a Weft proxy: proxy-to-proxy transport, mTLS
	ProtocolOpaque                  // opaque port: forward bytes
)

// Endpoint is one address serving a target.
type Endpoint struct {
	Addr     string   `json:"addr"`               // IP:port
	Weight   uint32   `json:"weight,omitempty"`   // default 10000
	Identity string   `json:"identity,omitempty"` // TLS identity of a meshed endpoint
	Protocol Protocol `json:"protocol,omitempty"`
	// Meshed: the endpoint runs a Weft proxy, whatever its port's protocol.
	Meshed bool `json:"meshed,omitempty"`
	// OpaqueTransportPort is the endpoint proxy's inbound port, set on
	// meshed endpoints of opaque ports: clients reach them over mTLS there.
	OpaqueTransportPort uint32            `json:"opaque_transport_port,omitempty"`
	Zone                string            `json:"zone,omitempty"`
	Terminating         bool              `json:"terminating,omitempty"`
	Labels              map[string]string `json:"labels,omitempty"`    // dst_pod, dst_deployment, ...
	ForZones            []string          `json:"for_zones,omitempty"` // topology hints
}

// Equal reports whether two endpoints would be sent identically.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.Addr == o.Addr && e.Weight == o.Weight && e.Identity == o.Identity && e.Protocol == o.Protocol &&
		e.Meshed == o.Meshed && e.OpaqueTransportPort == o.OpaqueTransportPort &&
		e.Zone == o.Zone && e.Terminating == o.Terminating && maps.Equal(e.Labels, o.Labels) && slices.Equal(e.ForZones, o.ForZones)
}

// Snapshot is a target's whole endpoint set at one moment.
type Snapshot struct {
	// Exists is false when the target names nothing known (the proxy then
	// forwards to the address as is).
	Exists    bool
	Endpoints []Endpoint
	// Labels apply to every endpoint (dst_namespace, dst_service).
	Labels map[string]string
}

// Profile is what a proxy needs to know about a target beyond endpoints:
// whether it is opaque, and its routes from a ServiceProfile.
type Profile struct {
	FullyQualifiedName string
	Opaque             bool
	Routes             []Route
	RetryBudget        *RetryBudget
}

// Route is a ServiceProfile route: requests it matches get its timeout,
// retries and response classes.
type Route struct {
	Name      string
	Method    string // exact; empty: any
	PathRegex string // the whole path; empty: any
	Timeout   time.Duration
	Retryable bool
	Classes   []ResponseClass
}

// ResponseClass classifies responses whose status is within [Min, Max].
type ResponseClass struct {
	StatusMin, StatusMax uint32
	Failure              bool
}

// RetryBudget bounds retries (a ServiceProfile's retryBudget).
type RetryBudget struct {
	Ratio        float32
	MinPerSecond uint32
	TTL          time.Duration
}

// ProfileSubscriber is implemented by backends whose profiles change over
// time (ServiceProfiles): update is called at once and after each change.
type ProfileSubscriber interface {
	SubscribeProfile(target string, update func(Profile)) (cancel func(), err error)
}

// Backend is a source of snapshots. Subscribe calls update with the current
// snapshot at once and again after every change, until cancel is called.
// Calls to update for one subscription are never concurrent.
type Backend interface {
	Subscribe(target string, update func(Snapshot)) (cancel func(), err error)
	Profile(target string) (Profile, error)
}

// Diff is the incremental update that turns one snapshot into the next.
type Diff struct {
	Add    []Endpoint // new or changed endpoints
	Remove []string   // addresses gone
	// NoEndpoints is set when the new snapshot is empty (Add and Remove
	// are then empty): the proxy drops the whole set.
	NoEndpoints bool
	Exists      bool
	Labels      map[string]string // set when the set-level labels changed (or first)
}

// Differ turns successive snapshots into minimal diffs for one stream.
type Differ struct {
	sent    map[string]Endpoint
	labels  map[string]string
	started bool
	empty   bool
}

// Next returns the update from the last snapshot to s, and false when
// nothing changed.
func (d *Differ) Next(s Snapshot) (Diff, bool) {
	first := !d.started
	d.started = true
	if len(s.Endpoints) == 0 {
		if !first && d.empty {
			return Diff{}, false
		}
		d.sent, d.empty, d.labels = nil, true, s.Labels
		return Diff{NoEndpoints: true, Exists: s.Exists}, true
	}
	next := make(map[string]Endpoint, len(s.Endpoints))
	var diff Diff
	for _, e := range s.Endpoints {
		next[e.Addr] = e
		if old, ok := d.sent[e.Addr]; !ok || !old.Equal(e) {
			diff.Add = append(diff.Add, e)
		}
	}
	for addr := range d.sent {
		if _, ok := next[addr]; !ok {
			diff.Remove = append(diff.Remove, addr)
		}
	}
	slices.Sort(diff.Remove)
	if first || d.empty || !maps.Equal(d.labels, s.Labels) {
		diff.Labels = s.Labels
		if diff.Labels == nil {
			diff.Labels = map[string]string{}
		}
	}
	d.sent, d.labels, d.empty = next, s.Labels, false
	diff.Exists = true
	if len(diff.Add) == 0 && len(diff.Remove) == 0 && diff.Labels == nil {
		return Diff{}, false
	}
	return diff, true
}
