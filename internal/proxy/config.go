package proxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/trace"
)

// Config is everything the proxy needs to run. The zero value is not valid;
// start from DefaultConfig.
type Config struct {
	// OutboundAddr and InboundAddr are comma-separated listen addresses
	// (e.g. "127.0.0.1:4140,[::1]:4140" for IPv6 pods).
	OutboundAddr string
	InboundAddr  string
	AdminAddr    string
	ControlAddr  string
	AddrFile     string // where Start writes the bound addresses ("": nowhere)
	// TapSvcName, with identity enabled, serves tap (internal/tap) on the
	// control port to that identity only.
	TapSvcName string

	// OpaquePorts skip protocol detection (inbound: by the original
	// destination port; outbound: by the destination port).
	OpaquePorts map[uint16]bool
	// DetectTimeout bounds protocol detection; on expiry the connection is opaque.
	DetectTimeout time.Duration
	// OutboundConnectTimeout and InboundConnectTimeout bound each dial.
	OutboundConnectTimeout time.Duration
	InboundConnectTimeout  time.Duration
	// ResponseTimeout bounds the time to response headers (0: none).
	ResponseTimeout time.Duration
	// HeaderReadTimeout bounds how long a client may take to send a request
	// head (slowloris protection).
	HeaderReadTimeout time.Duration
	// NetHTTP1Server serves HTTP/1 with net/http's server only, not the
	// proxy's own HTTP/1 loop for the common case (h1serve.go).
	NetHTTP1Server bool
	// NetHTTP2Server serves HTTP/2 with net/http's server, not the proxy's
	// own (internal/h2server).
	NetHTTP2Server bool
	// ShutdownGrace is how long in-flight work may drain after SIGTERM.
	ShutdownGrace time.Duration
	// ShutdownEndpoint enables POST /shutdown on the admin server.
	ShutdownEndpoint bool
	// IngressMode routes outbound HTTP by l5d-dst-override, :authority or Host.
	IngressMode bool

	// Destinations map a logical destination (host:port) to its endpoints
	// (explicit mode, and the static fallback without a control plane).
	Destinations map[string][]EndpointSpec
	// Bindings are extra outbound listeners whose traffic goes to one destination.
	Bindings []Binding
	// InboundForward, when set, is where inbound traffic goes instead of
	// 127.0.0.1:<original port>.
	InboundForward string
	// PreserveClientAddress connects inbound traffic to the app from the
	// client's IP (clientaddr.go; needs CAP_NET_ADMIN and
	// weft-proxy-init's client-address rules).
	PreserveClientAddress bool

	RetryBudgetRatio     float64
	RetryBudgetMinPerSec float64

	// DestinationAddr is the destination service (host:port); empty: no
	// control plane, targets resolve to themselves or to Destinations.
	DestinationAddr string
	// PolicyAddr is the policy controller (host:port) whose
	// OutboundPolicies stream each Service's routing table; empty: no
	// routes beyond ServiceProfiles.
	PolicyAddr string
	// DestinationName and PolicyName are the identities the destination
	// service and the policy controller must present: with identity
	// enabled the proxy reaches them over mTLS; empty: plaintext.
	DestinationName, PolicyName string
	// DestinationContext describes this pod to the destination service
	// (JSON: ns, nodeName, pod), for topology preferences.
	DestinationContext string
	// DiscoveryIdleTimeout stops discovery of a destination not used for
	// this long.
	DiscoveryIdleTimeout time.Duration

	// Identity configures mTLS; a zero value (no local name) disables it.
	Identity IdentityConfig
	// Policy is the static inbound authorization policy (authz.go).
	Policy PolicyConfig

	// Trace says where spans go (observe.go); AccessLog is "", "apache"
	// or "json".
	Trace     trace.Config
	AccessLog string

	// MetricsLabels are added to every metric (the pod's own identity).
	MetricsLabels      map[string]string
	MetricsIdleTimeout time.Duration
	// Workers sizes GOMAXPROCS (workers.go); weft-proxy applies it at
	// start.
	Workers  Workers
	LogLevel string
	// ReleaseStartupPages: weft-proxy releases its executable's pages
	// once serving (internal/residency).
	ReleaseStartupPages bool
}

// IdentityConfig says how the proxy obtains its certificate.
type IdentityConfig struct {
	LocalName       string // the identity to request (DNS form)
	SvcAddr         string // identity service host:port
	SvcName         string // identity the identity service must present
	TokenFile       string // projected ServiceAccount token or static token
	TrustAnchorsPEM string
}

// Enabled reports whether mTLS is configured.
func (c IdentityConfig) Enabled() bool { return c.LocalName != "" }

// EndpointSpec is one configured endpoint of a destination.
type EndpointSpec struct {
	Addr string
	// Proxy marks the endpoint as another Weft proxy's inbound listener, so
	// HTTP/1 may be carried over the multiplexed proxy-to-proxy HTTP/2 transport.
	Proxy bool
	// Identity, when set, is the TLS identity the endpoint's proxy must
	// present: traffic to it is mTLS.
	Identity string
}

// Binding is an explicit-mode outbound listener.
type Binding struct {
	Listen string
	Dst    string
}

// DefaultConfig returns the configuration used with no flags and no environment.
func DefaultConfig() Config {
	return Config{
		OutboundAddr:           compat.DefaultOutboundAddr,
		InboundAddr:            compat.DefaultInboundAddr,
		AdminAddr:              compat.DefaultAdminAddr,
		ControlAddr:            compat.DefaultControlAddr,
		OpaquePorts:            map[uint16]bool{},
		DetectTimeout:          10 * time.Second,
		OutboundConnectTimeout: time.Second,
		InboundConnectTimeout:  time.Second,
		HeaderReadTimeout:      10 * time.Second,
		ShutdownGrace:          30 * time.Second,
		Destinations:           map[string][]EndpointSpec{},
		RetryBudgetRatio:       0.2,
		RetryBudgetMinPerSec:   10,
		MetricsIdleTimeout:     10 * time.Minute,
		DiscoveryIdleTimeout:   time.Minute,
		LogLevel:               "info",
		ReleaseStartupPages:    true,
		Policy:                 defaultPolicyConfig(),
		Trace:                  trace.Config{ServiceName: compat.DefaultTraceServiceName, Protocol: trace.ProtocolOpenTelemetry},
	}
}

// ParseDuration accepts Go durations ("1.5s") and bare milliseconds ("1000"),
// and Linkerd's "100ms" style.
func ParseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration like 500ms or 10s, got %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// AddOpaquePorts adds a comma-separated list of ports and ranges ("25,3306,5000-5010").
func (c *Config) AddOpaquePorts(s string) error {
	ports, err := authz.ParsePorts(s)
	if err != nil {
		return err
	}
	if c.OpaquePorts == nil {
		c.OpaquePorts = map[uint16]bool{}
	}
	for p := range ports {
		c.OpaquePorts[p] = true
	}
	return nil
}

// AddDestination parses "NAME=ADDR[,ADDR...]" where an ADDR written
// weft://host:port is another Weft proxy's inbound listener, and
// weft://IDENTITY@host:port one that must present IDENTITY (mTLS).
func (c *Config) AddDestination(s string) error {
	name, list, ok := strings.Cut(s, "=")
	if !ok || name == "" || list == "" {
		return fmt.Errorf("destination %q: want NAME=ADDR[,ADDR...]", s)
	}
	if _, _, err := net.SplitHostPort(name); err != nil {
		return fmt.Errorf("destination %q: name must be host:port: %v", s, err)
	}
	var eps []EndpointSpec
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		spec := EndpointSpec{Addr: a}
		if rest, ok := strings.CutPrefix(a, "weft://"); ok {
			spec = EndpointSpec{Addr: rest, Proxy: true}
			if id, addr, ok := strings.Cut(rest, "@"); ok {
				if id == "" {
					return fmt.Errorf("destination %q: endpoint %q: empty identity before @", name, a)
				}
				spec = EndpointSpec{Addr: addr, Proxy: true, Identity: id}
			}
		}
		if _, _, err := net.SplitHostPort(spec.Addr); err != nil {
			return fmt.Errorf("destination %q: endpoint %q: %v", name, a, err)
		}
		eps = append(eps, spec)
	}
	if c.Destinations == nil {
		c.Destinations = map[string][]EndpointSpec{}
	}
	c.Destinations[name] = eps
	return nil
}

// AddBinding parses "LISTEN=NAME".
func (c *Config) AddBinding(s string) error {
	listen, dst, ok := strings.Cut(s, "=")
	if !ok || listen == "" || dst == "" {
		return fmt.Errorf("binding %q: want LISTEN_ADDR=DESTINATION", s)
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return fmt.Errorf("binding %q: listen address: %v", s, err)
	}
	if _, _, err := net.SplitHostPort(dst); err != nil {
		return fmt.Errorf("binding %q: destination must be host:port: %v", s, err)
	}
	c.Bindings = append(c.Bindings, Binding{Listen: listen, Dst: dst})
	return nil
}

// SplitAddrs splits a comma-separated address list.
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want name=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// Validate checks addresses and cross-field rules.
func (c *Config) Validate() error {
	for name, addrs := range map[string]string{
		"outbound address": c.OutboundAddr, "inbound address": c.InboundAddr,
		"admin address": c.AdminAddr, "control address": c.ControlAddr,
	} {
		for _, addr := range SplitAddrs(addrs) {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return fmt.Errorf("%s %q: %v", name, addr, err)
			}
		}
		if len(SplitAddrs(addrs)) == 0 {
			return fmt.Errorf("%s is empty", name)
		}
	}
	if c.InboundForward != "" {
		if _, _, err := net.SplitHostPort(c.InboundForward); err != nil {
			return fmt.Errorf("inbound forward address %q: %v", c.InboundForward, err)
		}
	}
	for _, b := range c.Bindings {
		if _, ok := c.Destinations[b.Dst]; !ok && c.DestinationAddr == "" {
			if _, err := parseAddrPort(b.Dst); err != nil {
				return fmt.Errorf("binding %s=%s: destination is not configured with --dst, not an IP:port, and there is no destination service (%s)", b.Listen, b.Dst, compat.EnvDestinationSvcAddr)
			}
		}
	}
	if id := c.Identity; id.Enabled() && (id.SvcAddr == "" || id.SvcName == "" || id.TrustAnchorsPEM == "" || id.TokenFile == "") {
		return fmt.Errorf("identity %q: %s, %s, %s and %s are all required (or set %s)", id.LocalName,
			compat.EnvIdentitySvcAddr, compat.EnvIdentitySvcName, compat.EnvTrustAnchors, compat.EnvIdentityTokenFile, compat.EnvIdentityDisabled)
	}
	if err := c.Trace.Validate(); err != nil {
		return err
	}
	if c.AccessLog != "" {
		if err := accesslog.Validate(c.AccessLog); err != nil {
			return err
		}
	}
	if c.DetectTimeout <= 0 {
		return fmt.Errorf("detect timeout must be positive")
	}
	return nil
}
