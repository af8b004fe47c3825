// Package inject decides whether a workload gets Weft's proxy and computes
// the JSON patch (RFC 6902) that adds it: the linkerd-init container (or the
// proxy as a native sidecar), the linkerd-proxy container with its
// environment, ports, probes, security context and volumes, and the
// annotations and labels Linkerd's injector writes. It is a pure function of
// the workload, its namespace's annotations and the Values; the admission
// webhook and `weft inject` are thin adapters around it.
package inject

import (
	"fmt"

	"github.com/weftmesh/weft/internal/compat"
)

// Values are the injector's configuration: the control plane's chart values
// that shape a proxy, with the names of Linkerd's chart (docs/compatibility.md), so that
// the linkerd-config ConfigMap's values decode into it.
type Values struct {
	ControllerNamespace     string `json:"-"` // the release's namespace, not a value
	ClusterDomain           string `json:"clusterDomain"`
	IdentityTrustDomain     string `json:"identityTrustDomain"`
	IdentityTrustAnchorsPEM string `json:"identityTrustAnchorsPEM"`
	ClusterNetworks         string `json:"clusterNetworks"`
	Version                 string `json:"linkerdVersion"`
	Proxy                   Proxy  `json:"proxy"`
	ProxyInit               Init   `json:"proxyInit"`
	// DisableIPv6 keeps proxies and linkerd-init to IPv4: no IPv6
	// listeners, no ip6tables rules (linkerd-init --ipv6=false).
	DisableIPv6 bool `json:"disableIPv6"`
}

// Image names a container image.
type Image struct {
	Name       string `json:"name"`
	PullPolicy string `json:"pullPolicy"`
	Version    string `json:"version"`
}

// Proxy shapes the linkerd-proxy container.
type Proxy struct {
	Image         Image     `json:"image"`
	UID           int64     `json:"uid"`
	LogLevel      string    `json:"logLevel"`
	Await         bool      `json:"await"`
	NativeSidecar bool      `json:"nativeSidecar"`
	OpaquePorts   string    `json:"opaquePorts"`
	Resources     Resources `json:"resources"`
	// Cores is Linkerd's deprecated proxy.cores: when set, the proxy's
	// cores (its minimum and maximum), and Runtime is ignored.
	Cores               int     `json:"cores"`
	Runtime             Runtime `json:"runtime"`
	ShutdownGracePeriod string  `json:"shutdownGracePeriod"`
	EnableShutdown      bool    `json:"enableShutdownEndpoint"`
	OutboundConnect     string  `json:"outboundConnectTimeout"`
	InboundConnect      string  `json:"inboundConnectTimeout"`
	// DefaultInboundPolicy and RequireIdentityOnInboundPorts shape the
	// proxy's static inbound policy (internal/authz).
	DefaultInboundPolicy          string `json:"defaultInboundPolicy"`
	RequireIdentityOnInboundPorts string `json:"requireIdentityOnInboundPorts"`
	// AwaitCommand is the proxy's postStart hook that holds the app
	// containers back until the proxy is ready (Weft's own value).
	AwaitCommand []string `json:"awaitCommand"`
}

// Runtime shapes the proxy's runtime (Linkerd's proxy.runtime).
type Runtime struct {
	Workers Workers `json:"workers"`
}

// Workers bound the cores the proxy runs on (LINKERD2_PROXY_CORES_MIN,
// _MAX and _MAX_RATIO; 0 leaves one unset). The injector raises Minimum to
// the proxy's CPU request and sets Maximum from its limit, in whole cores
// rounded up; the proxy uses Maximum, else MaximumCPURatio of the node's
// CPUs, else 2, but at least Minimum (internal/proxy/workers.go).
type Workers struct {
	Minimum         int     `json:"minimum"`
	Maximum         int     `json:"maximum"`
	MaximumCPURatio float64 `json:"maximumCPURatio"`
}

// check names a proxy.cores or proxy.runtime.workers value out of range.
func (p Proxy) check() error {
	w := p.Runtime.Workers
	switch {
	case p.Cores < 0:
		return fmt.Errorf("proxy.cores %d: want a whole number of cores", p.Cores)
	case w.Minimum < 0 || w.Maximum < 0:
		return fmt.Errorf("proxy.runtime.workers: minimum %d, maximum %d: want whole numbers of cores", w.Minimum, w.Maximum)
	case !(w.MaximumCPURatio >= 0 && w.MaximumCPURatio <= 1):
		return fmt.Errorf("proxy.runtime.workers.maximumCPURatio %v: want a share of the node's CPUs in (0, 1]", w.MaximumCPURatio)
	}
	return nil
}

// Resources are the proxy's requests and limits ("" leaves one unset).
type Resources struct {
	CPU    Quantities `json:"cpu"`
	Memory Quantities `json:"memory"`
}

// Quantities are a request and a limit.
type Quantities struct {
	Request string `json:"request"`
	Limit   string `json:"limit"`
}

// Init shapes the linkerd-init container.
type Init struct {
	Image               Image  `json:"image"`
	IgnoreInboundPorts  string `json:"ignoreInboundPorts"`
	IgnoreOutboundPorts string `json:"ignoreOutboundPorts"`
	SkipSubnets         string `json:"skipSubnets"`
	IptablesMode        string `json:"iptablesMode"` // legacy or nft
	RunAsRoot           bool   `json:"runAsRoot"`
}

// DefaultValues are the chart's defaults.
func DefaultValues() Values {
	return Values{
		ControllerNamespace: compat.DefaultControlPlaneNamespace,
		ClusterDomain:       compat.DefaultClusterDomain,
		IdentityTrustDomain: compat.DefaultIdentityTrustDomain,
		ClusterNetworks:     compat.DefaultClusterNetworks,
		// Linkerd's default (its chart's values.yaml, edge-26.8.3 and
		// stable 2.16 on): IPv6 is opt-in.
		DisableIPv6: true,
		Proxy: Proxy{
			Image:        Image{Name: "ghcr.io/weftmesh/weft-proxy", PullPolicy: "IfNotPresent"},
			UID:          compat.ProxyUID,
			LogLevel:     compat.DefaultProxyLogLevel,
			Await:        true,
			OpaquePorts:  compat.DefaultOpaquePorts,
			AwaitCommand: []string{"/weft-await", "--timeout=2m"},
			// Linkerd's default: at least one core (weft-proxy then
			// runs on two, internal/proxy/workers.go).
			Runtime: Runtime{Workers: Workers{Minimum: 1}},
			// Linkerd's default.
			DefaultInboundPolicy: "all-unauthenticated",
		},
		ProxyInit: Init{
			Image:               Image{Name: "ghcr.io/weftmesh/weft-proxy-init"},
			IgnoreInboundPorts:  "4567,4568",
			IgnoreOutboundPorts: "4567,4568",
			IptablesMode:        "legacy",
			RunAsRoot:           true, // the init image's iptables has no file capabilities
		},
	}
}

// version is the image tag: the image's own, else the release's.
func (i Image) ref(release string) string {
	v := i.Version
	if v == "" {
		v = release
	}
	return imageRef(i.Name, v)
}
