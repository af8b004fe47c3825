package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
)

// PolicyConfig is the proxy's static inbound policy: what applies to a
// port the control plane says nothing about.
type PolicyConfig struct {
	Default         authz.DefaultPolicy
	RequireIdentity map[uint16]bool
	ClusterNetworks []authz.Network
	Probes          map[uint16][]string
	// Workload names the pod to the policy controller ("ns:pod"); with
	// Config.PolicyAddr set, cmd/weft-proxy watches inbound policies there.
	Workload string
}

// defaultPolicyConfig is Linkerd's: all-unauthenticated, the chart's
// default cluster networks.
func defaultPolicyConfig() PolicyConfig {
	nets, _ := authz.ParseNetworks(compat.DefaultClusterNetworks)
	return PolicyConfig{Default: authz.AllUnauthenticated, ClusterNetworks: nets}
}

// policySettings are the inbound policy's rows of Settings.
var policySettings = []Setting{
	{Env: []string{compat.EnvInboundDefaultPolicy}, Default: string(authz.AllUnauthenticated),
		Help: "inbound authorization of ports no Server selects: see [policy.md](policy.md)",
		Set: func(c *Config, _, v string) error {
			d, err := authz.ParseDefaultPolicy(v)
			if err == nil {
				c.Policy.Default = d
			}
			return err
		}},
	{Env: []string{compat.EnvInboundRequireID}, Help: "ports whose default policy requires mTLS identity",
		Set: func(c *Config, _, v string) error {
			ports, err := authz.ParsePorts(v)
			if err == nil {
				c.Policy.RequireIdentity = ports
			}
			return err
		}},
	{Env: []string{compat.EnvPolicyClusterNetworks}, Help: "the networks `cluster-*` policies admit (default: Linkerd's private ranges)",
		Set: func(c *Config, _, v string) error {
			nets, err := authz.ParseNetworks(v)
			if err == nil {
				c.Policy.ClusterNetworks = nets
			}
			return err
		}},
	{Env: []string{compat.EnvInboundProbes}, Help: "the app's HTTP probes, `PORT/PATH,...`, admitted by default policies and never rate-limited",
		Set: func(c *Config, _, v string) error {
			probes, err := authz.ParseProbes(v)
			if err == nil {
				c.Policy.Probes = probes
			}
			return err
		}},
	{Env: []string{compat.EnvPolicyWorkload}, Help: "this pod (`ns:pod`) to the policy controller",
		Set: setString(func(c *Config) *string { return &c.Policy.Workload })},
}

// StaticPolicies is the Source of the configuration's default policies.
func (c PolicyConfig) StaticPolicies() (*authz.Static, error) {
	return authz.NewStatic(authz.StaticConfig{Default: c.Default, RequireIdentity: c.RequireIdentity,
		Cluster: c.ClusterNetworks, Probes: c.Probes})
}

// authzMetrics are Linkerd's inbound authorization and rate-limit counters.
type authzMetrics struct {
	httpAllow, httpDeny, httpNotFound, rateLimited *prometheus.CounterVec
	tcpAllow, tcpDeny, tcpTerminate                *prometheus.CounterVec
}

var (
	srvLabels        = []string{compat.LabelTargetAddr, compat.LabelSrvGroup, compat.LabelSrvKind, compat.LabelSrvName, compat.LabelTLS, compat.LabelClientID}
	authzRouteLabels = append(append([]string{}, srvLabels...), compat.LabelRouteGroup, compat.LabelRouteKind, compat.LabelRouteName)
	authzLabels      = []string{compat.LabelAuthzGroup, compat.LabelAuthzKind, compat.LabelAuthzName}
	rateLabels       = append(append([]string{}, srvLabels...), compat.LabelRateLimitGroup, compat.LabelRateLimitKind, compat.LabelRateLimitName, compat.LabelRateLimitScope)
)

func newAuthzMetrics(constLabels map[string]string) *authzMetrics {
	cl := prometheus.Labels(constLabels)
	vec := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, labels)
	}
	return &authzMetrics{
		httpAllow:    vec(compat.MetricInboundHTTPAuthzAllow, "The total number of inbound HTTP requests that were authorized.", append(append([]string{}, authzRouteLabels...), authzLabels...)),
		httpDeny:     vec(compat.MetricInboundHTTPAuthzDeny, "The total number of inbound HTTP requests that were denied.", authzRouteLabels),
		httpNotFound: vec(compat.MetricInboundHTTPRouteNotFound, "The total number of inbound HTTP requests that could not be associated with a route.", srvLabels),
		rateLimited:  vec(compat.MetricInboundHTTPRateLimit, "The total number of inbound HTTP requests that were rate-limited.", rateLabels),
		tcpAllow:     vec(compat.MetricInboundTCPAuthzAllow, "The total number of inbound TCP connections that were authorized.", append(append([]string{}, srvLabels...), authzLabels...)),
		tcpDeny:      vec(compat.MetricInboundTCPAuthzDeny, "The total number of inbound TCP connections that were denied.", srvLabels),
		tcpTerminate: vec(compat.MetricInboundTCPAuthzTerminate, "The total number of inbound TCP connections that were terminated due to an authorization change.", srvLabels),
	}
}

func (m *authzMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.httpAllow, m.httpDeny, m.httpNotFound, m.rateLimited, m.tcpAllow, m.tcpDeny, m.tcpTerminate}
}

func srvValues(info *connInfo, d authz.Decision) []string {
	return []string{info.dst, d.Server.Group, d.Server.Kind, d.Server.Name, info.tls, info.clientID}
}

func metaValues(m authz.Meta) []string { return []string{m.Group, m.Kind, m.Name} }

// allowCache is a connection's last inbound_http_authz_allow_total
// series and what it was looked up for. A connection's requests nearly
// always get the same decision; the label lookup (12 values hashed, a
// slice allocated) was ~1.5 % of an inbound proxy's CPU (issue 17). The
// authz series are never deleted, so a kept counter stays the exported one.
type allowCache struct {
	server, route, authz authz.Meta
	c                    prometheus.Counter
}

// allowCounter is the allow series of decision d on info's connection.
func (p *Proxy) allowCounter(info *connInfo, d authz.Decision) prometheus.Counter {
	if a := info.allow.Load(); a != nil && a.server == d.Server && a.route == d.Route && a.authz == d.Authz {
		return a.c
	}
	c := p.authzm.httpAllow.WithLabelValues(append(append(srvValues(info, d), metaValues(d.Route)...), metaValues(d.Authz)...)...)
	info.allow.Store(&allowCache{server: d.Server, route: d.Route, authz: d.Authz, c: c})
	return c
}

// clientOf is the authorization view of a connection's client.
func clientOf(remote string, info *connInfo) authz.Client {
	c := authz.Client{Identity: info.clientID}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		c.Addr = ap.Addr().Unmap()
	} else if host, _, err := net.SplitHostPort(remote); err == nil {
		c.Addr, _ = netip.ParseAddr(host)
	}
	return c
}

// authorizeConn decides an inbound opaque connection; a denied one is
// counted and must be closed.
func (p *Proxy) authorizeConn(c net.Conn, info *connInfo) bool {
	pol := p.policies.Policy(info.port)
	d := pol.CheckConn(clientOf(c.RemoteAddr().String(), info))
	if !d.Allowed {
		p.authzm.tcpDeny.WithLabelValues(srvValues(info, d)...).Inc()
		p.log.Info("inbound connection denied by policy", "port", info.port, "server", d.Server.Name,
			"peer", c.RemoteAddr().String(), "client_id", info.clientID, "tls", info.tls)
		return false
	}
	p.authzm.tcpAllow.WithLabelValues(append(srvValues(info, d), metaValues(d.Authz)...)...).Inc()
	if d.Audit {
		p.log.Debug("audit: connection allowed that no authorization admits", "port", info.port, "server", d.Server.Name, "client_id", info.clientID)
	}
	return true
}

// policyRecheck is how often an open inbound opaque connection looks for
// a new policy of its port.
const policyRecheck = 250 * time.Millisecond

// revokeOnPolicyChange keeps an authorized inbound opaque connection
// (client side c, application side up) under its port's policy: when the
// policy changes and no longer admits the client, both sides are closed
// and the termination counted, so that a policy applied while traffic
// flows also cuts connections already open. stop ends the watch.
func (p *Proxy) revokeOnPolicyChange(c, up net.Conn, info *connInfo) (stop func()) {
	client := clientOf(c.RemoteAddr().String(), info)
	last := p.policies.Policy(info.port)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(policyRecheck)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			pol := p.policies.Policy(info.port)
			if pol == last {
				continue
			}
			last = pol
			if d := pol.CheckConn(client); !d.Allowed {
				p.authzm.tcpTerminate.WithLabelValues(srvValues(info, d)...).Inc()
				p.log.Info("inbound connection closed: the policy no longer authorizes it", "port", info.port, "server", d.Server.Name,
					"peer", c.RemoteAddr().String(), "client_id", info.clientID)
				c.Close()
				up.Close()
				return
			}
		}
	}()
	return func() { close(done) }
}

// authorizeRequest decides an inbound HTTP request and applies the
// Server's rate limit; when it returns false the answer has been written.
func (p *Proxy) authorizeRequest(w http.ResponseWriter, r *http.Request, info *connInfo) bool {
	pol := p.policies.Policy(info.port)
	client := clientOf(r.RemoteAddr, info)
	d := pol.CheckRequest(client, r.Method, r.URL.Path, r.Header)
	grpc := isGRPC(r)
	switch {
	case d.NotFound:
		p.authzm.httpNotFound.WithLabelValues(srvValues(info, d)...).Inc()
		refuse(w, grpc, http.StatusNotFound, grpcNotFound, compat.ProxyErrorRouteNotFound)
		return false
	case !d.Allowed:
		p.authzm.httpDeny.WithLabelValues(append(srvValues(info, d), metaValues(d.Route)...)...).Inc()
		p.log.Debug("inbound request denied by policy", "port", info.port, "server", d.Server.Name, "route", d.Route.Name,
			"path", r.URL.Path, "client_id", info.clientID, "tls", info.tls)
		refuse(w, grpc, http.StatusForbidden, grpcPermissionDenied, compat.ProxyErrorUnauthorized)
		return false
	}
	if l := pol.Limiter(); l != nil && !pol.IsProbe(r.Method, r.URL.Path) {
		if ok, scope := l.Allow(client.Identity); !ok {
			rl := l.Meta()
			p.authzm.rateLimited.WithLabelValues(append(srvValues(info, d), rl.Group, rl.Kind, rl.Name, scope)...).Inc()
			w.Header().Set("Retry-After", "1")
			refuse(w, grpc, http.StatusTooManyRequests, grpcResourceExhausted, compat.ProxyErrorRateLimited)
			return false
		}
	}
	p.allowCounter(info, d).Inc()
	if d.Audit {
		p.log.Debug("audit: request allowed that no authorization admits", "port", info.port, "server", d.Server.Name,
			"route", d.Route.Name, "client_id", info.clientID)
	}
	return true
}

// gRPC status codes of the proxy's own answers.
const (
	grpcNotFound          = 5
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
)

func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// refuse answers a request the proxy will not forward: HTTP status and
// l5d-proxy-error, or for gRPC a trailers-only response with grpc-status.
func refuse(w http.ResponseWriter, grpc bool, status, grpcStatus int, msg string) {
	if !grpc {
		proxyError(w, status, msg)
		return
	}
	h := w.Header()
	h.Set(compat.HeaderProxyError, msg)
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", fmt.Sprint(grpcStatus))
	h.Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}
