package proxy

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// Setting is one proxy setting, declared once: ApplyEnv reads it from the
// environment, Flags defines its flag (and --help), and SettingsMarkdown
// renders its row of docs/proxy.md's table (a test keeps the two equal).
type Setting struct {
	Flag    string   // without dashes; "" when only the environment sets it
	Env     []string // variables in the order applied: a later one wins
	EnvNote string   // after the variables in the docs, e.g. "(`;`-separated)"
	Default string   // as the docs show it
	Help    string   // the docs' meaning (markdown); --help drops the backticks
	IsBool  bool     // a flag without a value means true
	// Set parses a value (from the variable named env, or from the flag
	// when env is "") into c.
	Set func(c *Config, env, v string) error
}

func setString(field func(*Config) *string) func(*Config, string, string) error {
	return func(c *Config, _, v string) error { *field(c) = v; return nil }
}

func setDuration(field func(*Config) *time.Duration) func(*Config, string, string) error {
	return func(c *Config, _, v string) error {
		d, err := ParseDuration(v)
		if err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

func setBool(field func(*Config) *bool) func(*Config, string, string) error {
	return func(c *Config, _, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*field(c) = b
		return nil
	}
}

func setFloat(field func(*Config) *float64) func(*Config, string, string) error {
	return func(c *Config, _, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("want a non-negative number, got %q", v)
		}
		*field(c) = f
		return nil
	}
}

func setCores(field func(*Config) *int) func(*Config, string, string) error {
	return func(c *Config, _, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number of cores (0: none set), got %q", v)
		}
		*field(c) = n
		return nil
	}
}

// list applies add to each ';'-separated item of a variable, or to the
// flag's value (a repeatable flag).
func list(add func(c *Config, item string) error) func(*Config, string, string) error {
	return func(c *Config, env, v string) error {
		if env == "" {
			return add(c, v)
		}
		var errs []string
		for _, item := range strings.Split(v, ";") {
			if err := add(c, strings.TrimSpace(item)); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
}

func metricsLabel(name string) func(*Config, string, string) error {
	return func(c *Config, _, v string) error {
		if c.MetricsLabels == nil {
			c.MetricsLabels = map[string]string{}
		}
		c.MetricsLabels[name] = v
		return nil
	}
}

// Settings are the proxy's settings, in the order the environment is
// applied. Add a setting here (and its row to docs/proxy.md).
var Settings = append([]Setting{
	{Flag: "outbound-addr", Env: []string{compat.EnvOutboundListenAddr, compat.EnvOutboundListenAddrs}, Default: compat.DefaultOutboundAddr,
		Help: "outbound listeners, comma-separated; IPv6 pods add `" + compat.DefaultOutboundAddrIPv6 + "`",
		Set:  setString(func(c *Config) *string { return &c.OutboundAddr })},
	{Flag: "inbound-addr", Env: []string{compat.EnvInboundListenAddr, compat.EnvInboundListenAddrs}, Default: compat.DefaultInboundAddr,
		Help: "inbound listeners, comma-separated; each binds its own family, so dual-stack pods list `" + compat.DefaultInboundAddr + "," + compat.DefaultInboundAddrIPv6 + "`",
		Set:  setString(func(c *Config) *string { return &c.InboundAddr })},
	{Flag: "admin-addr", Env: []string{compat.EnvAdminListenAddr}, Default: compat.DefaultAdminAddr, Help: "admin server",
		Set: setString(func(c *Config) *string { return &c.AdminAddr })},
	{Flag: "control-addr", Env: []string{compat.EnvControlListenAddr}, Default: compat.DefaultControlAddr, Help: "control/tap listener",
		Set: setString(func(c *Config) *string { return &c.ControlAddr })},
	{Flag: "addr-file", Help: "once listening, write the bound addresses to this file as JSON: `admin`, `control`, `outbound`, `inbound`, `bind NAME` per binding, `outbound 2`… for further listeners (with port 0: where the proxy listens)",
		Set: setString(func(c *Config) *string { return &c.AddrFile })},
	{Env: []string{compat.EnvTapSvcName}, Help: "the tap server's identity: with identity enabled, tap is served on the control port over mTLS to that identity only; unset: tap is disabled",
		Set: setString(func(c *Config) *string { return &c.TapSvcName })},
	{Flag: "inbound-forward", Env: []string{compat.EnvInboundForward},
		Help: "inbound target instead of `127.0.0.1:<original port>`",
		Set:  setString(func(c *Config) *string { return &c.InboundForward })},
	{Flag: "preserve-client-address", Env: []string{compat.EnvPreserveClientAddress}, Default: "false", IsBool: true,
		Help: "connect to the application from the client's IP, not 127.0.0.1 (Weft's `" + compat.AnnotationPreserveClientAddress + "`; needs CAP_NET_ADMIN and weft-proxy-init `--preserve-client-address`)",
		Set:  setBool(func(c *Config) *bool { return &c.PreserveClientAddress })},
	{Flag: "dst", Env: []string{compat.EnvDestinations}, EnvNote: "(`;`-separated)",
		Help: "static destinations, `NAME=ADDR[,ADDR...]`: endpoints of a logical destination `host:port`; `weft://[ID@]ADDR` marks another weft-proxy's inbound listener (that must present ID); repeatable",
		Set:  list((*Config).AddDestination)},
	{Flag: "bind", Env: []string{compat.EnvBindings}, EnvNote: "(`;`-separated)",
		Help: "explicit outbound listeners, `LISTEN=NAME`: connections go to destination NAME; repeatable",
		Set:  list((*Config).AddBinding)},
	{Flag: "opaque-ports", Env: []string{compat.EnvOpaquePorts},
		Help: "ports/ranges that skip detection, e.g. `25,3306,5000-5010`",
		Set:  func(c *Config, _, v string) error { return c.AddOpaquePorts(v) }},
	{Flag: "detect-timeout", Env: []string{compat.EnvDetectTimeout}, Default: "10s", Help: "protocol detection timeout; then opaque",
		Set: setDuration(func(c *Config) *time.Duration { return &c.DetectTimeout })},
	{Flag: "outbound-connect-timeout", Env: []string{compat.EnvOutboundConnect}, Default: "1s", Help: "dial timeout, outbound",
		Set: setDuration(func(c *Config) *time.Duration { return &c.OutboundConnectTimeout })},
	{Flag: "inbound-connect-timeout", Env: []string{compat.EnvInboundConnect}, Default: "1s", Help: "dial timeout, inbound",
		Set: setDuration(func(c *Config) *time.Duration { return &c.InboundConnectTimeout })},
	{Flag: "response-timeout", Env: []string{compat.EnvResponseTimeout}, Default: "0", Help: "time to response headers, 0 for none; then 504",
		Set: setDuration(func(c *Config) *time.Duration { return &c.ResponseTimeout })},
	{Flag: "cores", Env: []string{compat.EnvProxyCores}, Default: "0",
		Help: "alone, exactly this many cores (as Linkerd's older proxies); with any of the three below, another name of `--cores-min`, which wins over it",
		Set:  setCores(func(c *Config) *int { return &c.Workers.Fixed })},
	{Flag: "cores-min", Env: []string{compat.EnvProxyCoresMin}, Default: "0",
		Help: "the fewest cores to use (GOMAXPROCS). weft-proxy runs on `--cores-max` cores, else `--cores-max-ratio` of those available, else 2 (Linkerd's proxy: 1; one core measured costlier here, issue 17), but at least `--cores-min` and at most those available (Go's default: the CPUs it may run on, lowered to the cgroup CPU limit rounded up, but not below 2 by that limit); a `GOMAXPROCS` variable overrides all of them. The injector sets them from `proxy.runtime.workers` and the CPU request (the minimum), limit (the maximum) and `config.linkerd.io/proxy-cpu-ratio-limit`",
		Set:  setCores(func(c *Config) *int { return &c.Workers.Min })},
	{Flag: "cores-max", Env: []string{compat.EnvProxyCoresMax}, Default: "0",
		Help: "the most cores to use, 0 for none set (then `--cores-max-ratio`, else 2)",
		Set:  setCores(func(c *Config) *int { return &c.Workers.Max })},
	{Flag: "cores-max-ratio", Env: []string{compat.EnvProxyCoresMaxRatio}, Default: "0",
		Help: "the most cores to use as a share of those available, in (0, 1], rounded to the nearest core; 0 for none set; `--cores-max` wins",
		Set: func(c *Config, _, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f >= 0 && f <= 1) {
				return fmt.Errorf("want a share of the CPUs in (0, 1] (0: none), got %q", v)
			}
			c.Workers.MaxRatio = f
			return nil
		}},
	{Flag: "release-startup-pages", Env: []string{compat.EnvReleaseStartupPages}, Default: "true", IsBool: true,
		Help: "once serving, give back the pages of the executable that start-up mapped and serving does not use (Linux): ~3.5 MiB less RSS (issue 17); they stay in the page cache and fault back in as needed; mappings holding private pages (a PIE build's relocated read-only data) are kept",
		Set:  setBool(func(c *Config) *bool { return &c.ReleaseStartupPages })},
	{Flag: "shutdown-grace", Env: []string{compat.EnvShutdownGrace}, Default: "30s", Help: "drain period after SIGTERM",
		Set: setDuration(func(c *Config) *time.Duration { return &c.ShutdownGrace })},
	{Flag: "shutdown-endpoint", Env: []string{compat.EnvShutdownEnabled}, Default: "false", IsBool: true,
		Help: "enable `POST /shutdown` on the admin port (loopback only)",
		Set:  setBool(func(c *Config) *bool { return &c.ShutdownEndpoint })},
	{Flag: "ingress", Env: []string{compat.EnvIngressMode}, Default: "false", IsBool: true,
		Help: "ingress mode: route outbound HTTP by `" + compat.HeaderDstOverride + "`, `:authority`, `Host`",
		Set:  setBool(func(c *Config) *bool { return &c.IngressMode })},
	{Flag: "log-level", Env: []string{compat.EnvLog}, Default: "info",
		Help: "`trace`, `debug`, `info`, `warn`, `error`, or Linkerd-style `" + compat.DefaultProxyLogLevel + "`",
		Set:  setString(func(c *Config) *string { return &c.LogLevel })},
	{Env: []string{compat.EnvRetryBudgetRatio}, Default: "0.2", Help: "retries allowed as a share of recent requests",
		Set: setFloat(func(c *Config) *float64 { return &c.RetryBudgetRatio })},
	{Env: []string{compat.EnvRetryMinPerSec}, Default: "10", Help: "retries allowed per second regardless of volume",
		Set: setFloat(func(c *Config) *float64 { return &c.RetryBudgetMinPerSec })},
	{Env: []string{compat.EnvPodNamespace}, Help: "the pod's namespace, as the `namespace` label of every metric", Set: metricsLabel("namespace")},
	{Env: []string{compat.EnvPodName}, Help: "the pod's name, as the `pod` label of every metric", Set: metricsLabel("pod")},
	{Env: []string{compat.EnvMetricsLabels}, Help: "extra labels on every metric, `k=v,k2=v2`",
		Set: func(c *Config, _, v string) error {
			extra, err := parseLabels(v)
			if err != nil {
				return err
			}
			for k, v := range extra {
				metricsLabel(k)(c, "", v)
			}
			return nil
		}},
	{Env: []string{compat.EnvMetricsIdle}, Default: "10m", Help: "series untouched this long are dropped",
		Set: setDuration(func(c *Config) *time.Duration { return &c.MetricsIdleTimeout })},
	{Env: []string{compat.EnvDestinationSvcAddr}, Help: "destination service `host:port`: see [destination.md](destination.md)",
		Set: setString(func(c *Config) *string { return &c.DestinationAddr })},
	{Env: []string{compat.EnvPolicySvcAddr}, Help: "policy controller `host:port`: outbound routes (HTTPRoute, GRPCRoute, Service annotations, [traffic.md](traffic.md)) and, with the workload, inbound policies ([policy.md](policy.md))",
		Set: setString(func(c *Config) *string { return &c.PolicyAddr })},
	{Env: []string{compat.EnvDestinationSvcName}, Help: "the identity the destination service must present: set (and identity enabled), the proxy reaches it over mTLS, else in plaintext",
		Set: setString(func(c *Config) *string { return &c.DestinationName })},
	{Env: []string{compat.EnvPolicySvcName}, Help: "the identity the policy controller must present (mTLS as above)",
		Set: setString(func(c *Config) *string { return &c.PolicyName })},
	{Env: []string{compat.EnvDestinationContext}, Help: "JSON describing the pod (`ns`, `nodeName`, `pod`), sent with every discovery request",
		Set: setString(func(c *Config) *string { return &c.DestinationContext })},
	{Flag: "discovery-idle-timeout", Env: []string{compat.EnvDiscoveryIdleTimeout}, Default: "1m", Help: "stop discovery of a destination unused this long",
		Set: setDuration(func(c *Config) *time.Duration { return &c.DiscoveryIdleTimeout })},
	{Env: []string{compat.EnvIdentityLocalName}, Help: "the identity to request; unset: identity disabled (plaintext, `tls=\"disabled\"`): see [identity.md](identity.md)",
		Set: setString(func(c *Config) *string { return &c.Identity.LocalName })},
	{Env: []string{compat.EnvIdentitySvcAddr}, Help: "identity service `host:port`",
		Set: setString(func(c *Config) *string { return &c.Identity.SvcAddr })},
	{Env: []string{compat.EnvIdentitySvcName}, Help: "the identity the service must present",
		Set: setString(func(c *Config) *string { return &c.Identity.SvcName })},
	{Env: []string{compat.EnvIdentityTokenFile}, Help: "token file, re-read before each request",
		Set: setString(func(c *Config) *string { return &c.Identity.TokenFile })},
	{Env: []string{compat.EnvTrustAnchors}, Help: "PEM trust anchors",
		Set: setString(func(c *Config) *string { return &c.Identity.TrustAnchorsPEM })},
	{Env: []string{compat.EnvIdentityDisabled}, Help: "set to disable identity (overrides the variables above)",
		Set: func(c *Config, _, _ string) error { c.Identity = IdentityConfig{}; return nil }},
	{Env: []string{compat.EnvTraceCollectorSvcAddr}, Help: "trace collector `host:port`; unset: no spans (see [tracing.md](tracing.md))",
		Set: setString(func(c *Config) *string { return &c.Trace.CollectorAddr })},
	{Env: []string{compat.EnvTraceCollectorSvcName}, Help: "the identity the collector must present: spans go over mTLS when identity is on",
		Set: setString(func(c *Config) *string { return &c.Trace.CollectorName })},
	{Env: []string{compat.EnvTraceProtocol}, Default: "opentelemetry", Help: "`opentelemetry` (OTLP/gRPC) or `opencensus`",
		Set: setString(func(c *Config) *string { return &c.Trace.Protocol })},
	{Env: []string{compat.EnvTraceServiceName}, Default: compat.DefaultTraceServiceName, Help: "the service name of the proxy's spans",
		Set: setString(func(c *Config) *string { return &c.Trace.ServiceName })},
	{Env: []string{compat.EnvTraceAttributesPath}, Help: "a file of `key=\"value\"` lines (the pod's labels, downward API) added to every span's resource",
		Set: setString(func(c *Config) *string { return &c.Trace.AttributesPath })},
	{Env: []string{compat.EnvAccessLog}, Help: "`apache` or `json`: log every inbound HTTP request to stderr",
		Set: setString(func(c *Config) *string { return &c.AccessLog })},
}, policySettings...) // inbound policy: authz.go

// ApplyEnv overrides c from the environment variables of Settings (empty
// ones are ignored); lookup is os.LookupEnv in production. Every invalid
// value is reported, each naming its variable.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	var errs []string
	for _, s := range Settings {
		for _, name := range s.Env {
			if v, ok := lookup(name); ok && v != "" {
				if err := s.Set(c, name, v); err != nil {
					errs = append(errs, fmt.Sprintf("%s: %v", name, err))
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Flags defines a flag on fs for every setting that has one, writing into c.
func Flags(fs *flag.FlagSet, c *Config) {
	for _, s := range Settings {
		if s.Flag == "" {
			continue
		}
		help := strings.ReplaceAll(s.Help, "`", "")
		if len(s.Env) > 0 {
			help += " (env " + strings.Join(s.Env, " or ") + ")"
		}
		fs.Var(&flagValue{s: s, c: c}, s.Flag, help)
	}
}

type flagValue struct {
	s Setting
	c *Config
}

func (f *flagValue) String() string {
	if f == nil || f.s.Set == nil {
		return ""
	}
	return f.s.Default
}

func (f *flagValue) Set(v string) error { return f.s.Set(f.c, "", v) }

func (f *flagValue) IsBoolFlag() bool { return f.s.IsBool }

// SettingsMarkdown is the settings table of docs/proxy.md.
func SettingsMarkdown() string {
	var b strings.Builder
	b.WriteString("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n")
	for _, s := range Settings {
		flagCol, envs, def := "", make([]string, len(s.Env)), "(none)"
		if s.Flag != "" {
			flagCol = "`--" + s.Flag + "`"
		}
		for i, e := range s.Env {
			envs[i] = "`" + e + "`"
		}
		env := strings.Join(envs, ", ")
		if s.EnvNote != "" {
			env += " " + s.EnvNote
		}
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		b.WriteString(strings.ReplaceAll(fmt.Sprintf("| %s | %s | %s | %s |\n", flagCol, env, def, s.Help), "|  |", "| |"))
	}
	b.WriteString("| `--version` | | | print the version |\n")
	return b.String()
}
