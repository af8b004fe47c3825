// Package compat defines, once, every name of Weft's compatibility surface
// with Linkerd: ports, environment variables, HTTP headers, annotations,
// labels and metric names. Other packages refer to these constants instead
// of spelling the strings themselves (a discipline test forbids them
// elsewhere). docs/compatibility.md describes the surface.
package compat

// Default proxy ports.
const (
	OutboundPort = 4140
	InboundPort  = 4143
	ControlPort  = 4190
	AdminPort    = 4191

	DefaultOutboundAddr = "127.0.0.1:4140"
	DefaultInboundAddr  = "0.0.0.0:4143"
	DefaultAdminAddr    = "0.0.0.0:4191"
	DefaultControlAddr  = "0.0.0.0:4190"

	// The IPv6 listeners added beside the IPv4 ones when the chart's
	// disableIPv6 is false (LINKERD2_PROXY_*_LISTEN_ADDRS).
	DefaultOutboundAddrIPv6 = "[::1]:4140"
	DefaultInboundAddrIPv6  = "[::]:4143"

	// ProxyUID is the UID the proxy runs as; iptables lets its own traffic out.
	ProxyUID = 2102
)

// DefaultIgnoredInboundPorts are never redirected to the inbound listener
// (the proxy's own control and admin ports, plus 4567 and 4568).
var DefaultIgnoredInboundPorts = []int{ControlPort, AdminPort, 4567, 4568}

// Proxy environment variables. Names shared with Linkerd keep Linkerd's
// spelling; Weft-only settings start with WEFT_PROXY_.
const (
	EnvOutboundListenAddr  = "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR"
	EnvInboundListenAddr   = "LINKERD2_PROXY_INBOUND_LISTEN_ADDR"
	EnvOutboundListenAddrs = "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDRS" // comma-separated, e.g. for IPv6
	EnvInboundListenAddrs  = "LINKERD2_PROXY_INBOUND_LISTEN_ADDRS"
	EnvAdminListenAddr     = "LINKERD2_PROXY_ADMIN_LISTEN_ADDR"
	EnvControlListenAddr   = "LINKERD2_PROXY_CONTROL_LISTEN_ADDR"
	EnvLog                 = "LINKERD2_PROXY_LOG"
	EnvOpaquePorts         = "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"
	EnvShutdownEnabled     = "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED"
	EnvShutdownGrace       = "LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD"
	EnvDetectTimeout       = "LINKERD2_PROXY_DETECT_PROTOCOL_TIMEOUT"
	EnvOutboundConnect     = "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT"
	EnvInboundConnect      = "LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT"
	EnvIngressMode         = "LINKERD2_PROXY_INGRESS_MODE"
	EnvIdentityDisabled    = "LINKERD2_PROXY_IDENTITY_DISABLED"
	EnvIdentityLocalName   = "LINKERD2_PROXY_IDENTITY_LOCAL_NAME"
	EnvIdentitySvcAddr     = "LINKERD2_PROXY_IDENTITY_SVC_ADDR"
	EnvIdentitySvcName     = "LINKERD2_PROXY_IDENTITY_SVC_NAME"
	EnvIdentityTokenFile   = "LINKERD2_PROXY_IDENTITY_TOKEN_FILE"
	EnvTrustAnchors        = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"
	EnvDestinationSvcAddr  = "LINKERD2_PROXY_DESTINATION_SVC_ADDR"
	EnvPolicySvcAddr       = "LINKERD2_PROXY_POLICY_SVC_ADDR"
	// EnvTapSvcName is the only identity the proxy serves tap to (set by
	// the viz extension's injection).
	EnvTapSvcName = "LINKERD2_PROXY_TAP_SVC_NAME"
	// The identities the destination and policy controllers must present
	// (both run as the linkerd-destination ServiceAccount): set, the proxy
	// reaches them over mTLS.
	EnvDestinationSvcName = "LINKERD2_PROXY_DESTINATION_SVC_NAME"
	EnvPolicySvcName      = "LINKERD2_PROXY_POLICY_SVC_NAME"
	// EnvDestinationContext is the JSON the proxy sends the destination
	// service as its context token (see DestinationContextReference).
	EnvDestinationContext   = "LINKERD2_PROXY_DESTINATION_CONTEXT"
	EnvDiscoveryIdleTimeout = "LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT"
	// The pod's own coordinates, from fieldRefs, referenced by $(...) in
	// the values of later variables.
	EnvPodNamespace = "_pod_ns"
	EnvPodName      = "_pod_name"
	EnvPodNodeName  = "_pod_nodeName"

	// Inbound policy (set by the injector from proxy.defaultInboundPolicy,
	// clusterNetworks and the config.linkerd.io annotations).
	EnvInboundDefaultPolicy  = "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY"
	EnvInboundRequireID      = "LINKERD2_PROXY_INBOUND_PORTS_REQUIRE_IDENTITY"
	EnvPolicyClusterNetworks = "LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS"
	EnvPolicyWorkload        = "LINKERD2_PROXY_POLICY_WORKLOAD" // "$(_pod_ns):$(_pod_name)"
	PolicyWorkloadReference  = "$(" + EnvPodNamespace + "):$(" + EnvPodName + ")"
	// EnvInboundProbes lists the pod's HTTP probes, "PORT/PATH,...", so
	// that kubelet's probes pass a deny policy without a control plane.
	EnvInboundProbes = "WEFT_PROXY_INBOUND_PROBES"

	EnvDestinations     = "WEFT_PROXY_DESTINATIONS"
	EnvBindings         = "WEFT_PROXY_BINDINGS"
	EnvInboundForward   = "WEFT_PROXY_INBOUND_FORWARD_ADDR"
	EnvResponseTimeout  = "WEFT_PROXY_RESPONSE_TIMEOUT"
	EnvRetryBudgetRatio = "WEFT_PROXY_RETRY_BUDGET_RATIO"
	EnvRetryMinPerSec   = "WEFT_PROXY_RETRY_MIN_PER_SECOND"
	EnvMetricsLabels    = "WEFT_PROXY_METRICS_LABELS"
	EnvMetricsIdle      = "WEFT_PROXY_METRICS_IDLE_TIMEOUT"
)

// How many cores the proxy may use, Linkerd's proxy variables: the fewest
// (CORES_MIN, else CORES; CORES alone, Linkerd's older variable, sets them
// exactly), the most (CORES_MAX) and the most as a share of the CPUs
// available (CORES_MAX_RATIO); internal/proxy/workers.go. The injector sets
// them from proxy.runtime.workers and the proxy's CPU request, limit and
// ratio annotations.
const (
	EnvProxyCores         = "LINKERD2_PROXY_CORES"
	EnvProxyCoresMin      = "LINKERD2_PROXY_CORES_MIN"
	EnvProxyCoresMax      = "LINKERD2_PROXY_CORES_MAX"
	EnvProxyCoresMaxRatio = "LINKERD2_PROXY_CORES_MAX_RATIO"
)

// EnvReleaseStartupPages: once serving, the proxy gives back the pages of
// its executable that start-up mapped (internal/residency); "false" keeps
// them.
const EnvReleaseStartupPages = "WEFT_PROXY_RELEASE_STARTUP_PAGES"

// Tracing and access logs (set by the jaeger extension's injector and by
// the access-log annotation; docs/tracing.md).
const (
	EnvTraceCollectorSvcAddr   = "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_ADDR"
	EnvTraceCollectorSvcName   = "LINKERD2_PROXY_TRACE_COLLECTOR_SVC_NAME"
	EnvTraceAttributesPath     = "LINKERD2_PROXY_TRACE_ATTRIBUTES_PATH"
	EnvTraceServiceName        = "LINKERD2_PROXY_TRACE_SERVICE_NAME"
	EnvTraceProtocol           = "LINKERD2_PROXY_TRACE_PROTOCOL" // opentelemetry | opencensus
	EnvAccessLog               = "LINKERD2_PROXY_ACCESS_LOG"     // apache | json
	TraceProtocolOpenTelemetry = "opentelemetry"
	TraceProtocolOpenCensus    = "opencensus"
	AccessLogApache            = "apache"
	AccessLogJSON              = "json"
	// DefaultTraceServiceName is the service name of the proxy's spans.
	DefaultTraceServiceName = "linkerd-proxy"

	// The jaeger extension's workload annotations: the collector's
	// host:port and its ServiceAccount (whose identity the proxy checks).
	AnnotationTraceCollector           = "config.linkerd.io/trace-collector"
	AnnotationTraceCollectorSvcAccount = "config.alpha.linkerd.io/trace-collector-service-account"
	// The downward-API volume the injector adds for the trace attributes.
	TraceAttributesVolume    = "linkerd-podinfo"
	TraceAttributesMountPath = "/var/run/linkerd/podinfo"
	TraceAttributesFile      = "labels"
	// ServiceAccountIdentityFormat is a workload's mesh identity:
	// <serviceaccount>.<namespace>.serviceaccount.identity.<control plane ns>.<trust domain>.
	ServiceAccountIdentityFormat = "%s.%s.serviceaccount.identity.%s.%s"
	// Jaeger extension defaults (linkerd-jaeger's webhook.* values).
	DefaultTraceCollectorSvcAddr    = "collector.linkerd-jaeger:55678"
	DefaultTraceCollectorSvcAccount = "collector"
	JaegerNamespace                 = "linkerd-jaeger"
)

// DestinationContext is the JSON a proxy sends as the context token of its
// discovery requests (the value of LINKERD2_PROXY_DESTINATION_CONTEXT),
// with Linkerd's field names: where the caller runs, for topology-aware
// answers.
type DestinationContext struct {
	Namespace string `json:"ns,omitempty"`
	NodeName  string `json:"nodeName,omitempty"`
	Pod       string `json:"pod,omitempty"`
}

// LegacyContextTokenPrefix starts the older context token form, "ns:<namespace>".
const LegacyContextTokenPrefix = "ns:"

// HTTP headers.
const (
	HeaderDstOverride  = "l5d-dst-override"
	HeaderClientID     = "l5d-client-id"
	HeaderRequireID    = "l5d-require-id"
	HeaderProxyError   = "l5d-proxy-error"
	HeaderRemoteIP     = "l5d-remote-ip"
	HeaderServerID     = "l5d-server-id"
	HeaderDstCanonical = "l5d-dst-canonical"
	HeaderOrigProto    = "l5d-orig-proto"
)

// Annotations and labels.
const (
	AnnotationInject      = "linkerd.io/inject"
	AnnotationOpaquePorts = "config.linkerd.io/opaque-ports"
	LabelControlPlaneNS   = "linkerd.io/control-plane-ns"

	// Values of linkerd.io/inject.
	InjectEnabled  = "enabled"
	InjectDisabled = "disabled"
	InjectIngress  = "ingress"

	// config.linkerd.io/* overrides, on the pod (template) or inherited
	// from the namespace.
	AnnotationSkipInboundPorts     = "config.linkerd.io/skip-inbound-ports"
	AnnotationSkipOutboundPorts    = "config.linkerd.io/skip-outbound-ports"
	AnnotationDisableTap           = "config.linkerd.io/disable-tap"
	AnnotationSkipSubnets          = "config.linkerd.io/skip-subnets"
	AnnotationProxyAwait           = "config.linkerd.io/proxy-await"
	AnnotationProxyLogLevel        = "config.linkerd.io/proxy-log-level"
	AnnotationProxyCPURequest      = "config.linkerd.io/proxy-cpu-request"
	AnnotationProxyCPULimit        = "config.linkerd.io/proxy-cpu-limit"
	AnnotationProxyCPURatioLimit   = "config.linkerd.io/proxy-cpu-ratio-limit"
	AnnotationProxyMemoryRequest   = "config.linkerd.io/proxy-memory-request"
	AnnotationProxyMemoryLimit     = "config.linkerd.io/proxy-memory-limit"
	AnnotationProxyAdminShutdown   = "config.linkerd.io/proxy-admin-shutdown"
	AnnotationDefaultInboundPolicy = "config.linkerd.io/default-inbound-policy"
	AnnotationRequireIdentityPorts = "config.linkerd.io/proxy-require-identity-inbound-ports"
	AnnotationNativeSidecar        = "config.linkerd.io/proxy-enable-native-sidecar"
	AnnotationShutdownGracePeriod  = "config.linkerd.io/shutdown-grace-period"
	AnnotationOutboundConnect      = "config.linkerd.io/proxy-outbound-connect-timeout"
	AnnotationInboundConnect       = "config.linkerd.io/proxy-inbound-connect-timeout"
	AnnotationAccessLog            = "config.linkerd.io/access-log"
	AnnotationAccessLogAlpha       = "config.alpha.linkerd.io/access-log"
	AnnotationAdmissionWebhooks    = "config.linkerd.io/admission-webhooks" // label on namespaces: "disabled"
	AnnotationCreatedBy            = "linkerd.io/created-by"
	AnnotationProxyVersion         = "linkerd.io/proxy-version"
	AnnotationTrustRootSHA256      = "linkerd.io/trust-root-sha256"
	AnnotationIdentityMode         = "linkerd.io/identity-mode"
	LabelWorkloadNS                = "linkerd.io/workload-ns"
	LabelProxyKindPrefix           = "linkerd.io/proxy-" // + deployment, statefulset, daemonset, replicaset, job, cronjob
	LabelControlPlaneComponent     = "linkerd.io/control-plane-component"
	LabelCNIResource               = "linkerd.io/cni-resource"
	EventReasonInjected            = "Injected"
	EventReasonSkipped             = "Skipped"
	EventMessageInjected           = "Linkerd sidecar proxy injected"
	AudienceIdentity               = "identity.l5d.io"
	ProxyContainerName             = "linkerd-proxy"
	InitContainerName              = "linkerd-init"
	ProxyPortName                  = "linkerd-proxy"
	AdminPortName                  = "linkerd-admin"
	IdentityEndEntityVolume        = "linkerd-identity-end-entity"
	IdentityTokenVolume            = "linkerd-identity-token"
	// XtablesLockVolume is the emptyDir linkerd-init mounts at /run for the
	// xtables lock.
	XtablesLockVolume               = "linkerd-proxy-init-xtables-lock"
	TrustRootsConfigMap             = "linkerd-identity-trust-roots"
	ConfigConfigMap                 = "linkerd-config" // the chart's rendered values
	ConfigValuesKey                 = "values"
	TrustRootsKey                   = "ca-bundle.crt"
	EnvIdentityDir                  = "LINKERD2_PROXY_IDENTITY_DIR"
	IdentityDirPath                 = "/var/run/linkerd/identity/end-entity"
	IdentityTokenDir                = "/var/run/secrets/tokens"
	IdentityTokenFile               = IdentityTokenDir + "/linkerd-identity-token"
	DefaultControlPlaneNamespace    = "linkerd"
	DefaultClusterDomain            = "cluster.local"
	DefaultIdentityTrustDomain      = "cluster.local"
	DefaultOpaquePorts              = "25,587,3306,4444,5432,6379,9300,11211"
	IdentityServiceAddrFormat       = "linkerd-identity-headless.%s.svc.%s:8080"
	DestinationServiceAddrFormat    = "linkerd-dst-headless.%s.svc.%s:8086"
	IdentityServiceNameFormat       = "linkerd-identity.%s.serviceaccount.identity.%s.%s"
	DestinationServiceNameFormat    = "linkerd-destination.%s.serviceaccount.identity.%s.%s"
	DefaultClusterNetworks          = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8"
	ProxyIdentityLocalNameReference = "$(_pod_sa).$(_pod_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)"

	// DestinationContextReference is the value of
	// LINKERD2_PROXY_DESTINATION_CONTEXT: Linkerd's JSON shape, expanded
	// by the kubelet from the fieldRef variables defined before it.
	DestinationContextReference = `{"ns":"$(` + EnvPodNamespace + `)", "nodeName":"$(` + EnvPodNodeName + `)", "pod":"$(` + EnvPodName + `)"}`

	// AnnotationDefaultContainer is Kubernetes' (not Linkerd's): the
	// container kubectl logs/exec/attach pick when none is named. The
	// injector sets it to the first application container, so that the
	// proxy placed first does not become kubectl's default.
	AnnotationDefaultContainer = "kubectl.kubernetes.io/default-container"
)

// Metric names and label names.
const (
	MetricRequestTotal          = "request_total"
	MetricResponseTotal         = "response_total"
	MetricResponseLatencyMs     = "response_latency_ms"
	MetricTCPOpenTotal          = "tcp_open_total"
	MetricTCPCloseTotal         = "tcp_close_total"
	MetricTCPOpenConnections    = "tcp_open_connections"
	MetricTCPReadBytesTotal     = "tcp_read_bytes_total"
	MetricTCPWriteBytesTotal    = "tcp_write_bytes_total"
	MetricTCPConnectionDuration = "tcp_connection_duration_ms"
	MetricProxyBuildInfo        = "proxy_build_info"

	// Inbound authorization and rate limiting.
	MetricInboundHTTPAuthzAllow    = "inbound_http_authz_allow_total"
	MetricInboundHTTPAuthzDeny     = "inbound_http_authz_deny_total"
	MetricInboundHTTPRouteNotFound = "inbound_http_route_not_found_total"
	MetricInboundHTTPRateLimit     = "inbound_http_local_ratelimit_total"
	MetricInboundTCPAuthzAllow     = "inbound_tcp_authz_allow_total"
	MetricInboundTCPAuthzDeny      = "inbound_tcp_authz_deny_total"
	// MetricInboundTCPAuthzTerminate counts open connections closed because
	// a policy change no longer authorizes them.
	MetricInboundTCPAuthzTerminate = "inbound_tcp_authz_terminate_total"

	LabelDirection      = "direction"
	LabelAuthority      = "authority"
	LabelTargetAddr     = "target_addr"
	LabelTLS            = "tls"
	LabelNoTLSReason    = "no_tls_reason"
	LabelServerID       = "server_id"
	LabelClientID       = "client_id"
	LabelStatusCode     = "status_code"
	LabelGRPCStatus     = "grpc_status"
	LabelClassification = "classification"
	LabelErrno          = "errno"
	LabelPeer           = "peer"
)

// Labels of the inbound authorization metrics: the Server and the
// authorization (group, kind, name each; the route's are in
// routemetrics.go), and the rate limit.
const (
	LabelSrvGroup       = "srv_group"
	LabelSrvKind        = "srv_kind"
	LabelSrvName        = "srv_name"
	LabelAuthzGroup     = "authz_group"
	LabelAuthzKind      = "authz_kind"
	LabelAuthzName      = "authz_name"
	LabelRateLimitGroup = "ratelimit_group"
	LabelRateLimitKind  = "ratelimit_kind"
	LabelRateLimitName  = "ratelimit_name"
	LabelRateLimitScope = "ratelimit_scope"
)

// Messages of the proxy's authorization answers (l5d-proxy-error).
const (
	ProxyErrorUnauthorized  = "client is not authorized to access this server"
	ProxyErrorRouteNotFound = "no route found for request"
	ProxyErrorRateLimited   = "too many requests"
)

// DstLabels are the destination labels of outbound series, filled from
// what discovery says about the endpoint (Linkerd's dst_* set; the kinds
// follow the pod's linkerd.io/proxy-<kind> labels). Order is fixed: it is
// the order of metrics.DstLabels.
var DstLabels = [...]string{
	"dst_namespace", "dst_service", "dst_pod", "dst_serviceaccount", "dst_zone",
	"dst_deployment", "dst_replicaset", "dst_statefulset", "dst_daemonset", "dst_job", "dst_cronjob",
	"dst_replicationcontroller", "dst_pod_template_hash",
}

// Values of the no_tls_reason label.
const (
	NoTLSNotProvidedByDiscovery = "not_provided_by_service_discovery"
	NoTLSFromRemote             = "no_tls_from_remote"
)

// Values of the tls label.
const (
	TLSTrue       = "true"
	TLSNoIdentity = "no_identity"
	TLSDisabled   = "disabled"
)

// Directions.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// ResponseLatencyBucketsMs are the response_latency_ms histogram bounds
// Linkerd's dashboards expect.
var ResponseLatencyBucketsMs = []float64{
	1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
}

// The policy controller (weft-controller policy, the policy container of
// the linkerd-destination Deployment) and its Service.
const (
	// PolicyServiceAddrFormat is the proxy's LINKERD2_PROXY_POLICY_SVC_ADDR
	// (namespace, cluster domain), Linkerd's spelling with the FQDN's
	// trailing dot.
	PolicyServiceAddrFormat = "linkerd-policy.%s.svc.%s.:8090"
	PolicyGRPCPort          = 8090
	PolicyAdminPort         = 9990
)

// Control-plane objects, components and files.
const (
	IssuerSecret = "linkerd-identity-issuer"
	// Issuer Secret layouts (identity.issuer.scheme).
	IssuerSchemeLinkerd    = "linkerd.io/tls"    // keys crt.pem, key.pem
	IssuerSchemeKubernetes = "kubernetes.io/tls" // keys tls.crt, tls.key, ca.crt (cert-manager)

	InjectorTLSSecret     = "linkerd-proxy-injector-k8s-tls"
	InjectorWebhookConfig = "linkerd-proxy-injector-webhook-config"

	// The control plane's Deployments, Services and ServiceAccounts; the
	// identity and injector names are also their Event sources.
	IdentityComponent    = "linkerd-identity"
	DestinationComponent = "linkerd-destination"
	InjectorComponent    = "linkerd-proxy-injector"

	// ValuesVersionKey is the chart value naming the control plane's version.
	ValuesVersionKey = "linkerdVersion"

	// Subjects of the certificates weft install (and the demo) make:
	// prefix + trust domain.
	TrustAnchorCNPrefix = "root.linkerd."
	IssuerCNPrefix      = "identity.linkerd."

	// DefaultProxyLogLevel is proxy.logLevel's default.
	DefaultProxyLogLevel = "warn,linkerd=info"

	// Annotation and label prefixes: config.linkerd.io/* are the
	// overrides; linkerd.io/* are written by the control plane.
	ConfigAnnotationPrefix  = "config.linkerd.io/"
	LinkerdAnnotationPrefix = "linkerd.io/"
	ServiceProfileGroup     = "linkerd.io"

	// EnvProxyPrefix starts the proxy's Linkerd-named environment variables.
	EnvProxyPrefix = "LINKERD2_PROXY_"

	// Where the chart mounts what weft-controller reads.
	ConfigValuesPath    = "/var/run/linkerd/config/values"
	TrustRootsPath      = "/var/run/linkerd/identity/trust-roots/ca-bundle.crt"
	InjectorTLSCertPath = "/var/run/linkerd/tls/tls.crt"
	InjectorTLSKeyPath  = "/var/run/linkerd/tls/tls.key"
)

// CRDs lists the CustomResourceDefinitions weft check expects (weft
// install --crds).
var CRDs = []string{
	"serviceprofiles.linkerd.io", "servers.policy.linkerd.io", "serverauthorizations.policy.linkerd.io",
	"authorizationpolicies.policy.linkerd.io", "meshtlsauthentications.policy.linkerd.io", "networkauthentications.policy.linkerd.io",
	"httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io",
}

// The categories of weft check, as linkerd check names them.
const (
	CheckExistence = "linkerd-existence"
	CheckConfig    = "linkerd-config"
	CheckIdentity  = "linkerd-identity"
	CheckWebhooks  = "linkerd-webhooks"
	CheckDataPlane = "linkerd-data-plane"
	CheckPolicy    = "linkerd-policy"
)

// Outbound policy annotations, on a Service or on a route attached to it
// (Linkerd's names; a route's set replaces the Service's).
const (
	AnnotationTimeoutRequest  = "timeout.linkerd.io/request"
	AnnotationTimeoutResponse = "timeout.linkerd.io/response"
	AnnotationTimeoutIdle     = "timeout.linkerd.io/idle"
	AnnotationRetryHTTP       = "retry.linkerd.io/http"  // "5xx", "500-504", "429"
	AnnotationRetryGRPC       = "retry.linkerd.io/grpc"  // "cancelled,deadline-exceeded,..."
	AnnotationRetryLimit      = "retry.linkerd.io/limit" // default 1
	AnnotationRetryTimeout    = "retry.linkerd.io/timeout"
	DefaultRetryLimit         = 1

	// Failure accrual (circuit breaking), on a Service only.
	AnnotationFailureAccrual            = "balancer.linkerd.io/failure-accrual" // "consecutive"
	FailureAccrualConsecutive           = "consecutive"
	AnnotationFailureAccrualMaxFailures = "balancer.linkerd.io/failure-accrual-consecutive-max-failures"
	AnnotationFailureAccrualMinPenalty  = "balancer.linkerd.io/failure-accrual-consecutive-min-penalty"
	AnnotationFailureAccrualMaxPenalty  = "balancer.linkerd.io/failure-accrual-consecutive-max-penalty"
	AnnotationFailureAccrualJitter      = "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio"
	DefaultFailureAccrualMaxFailures    = 7
	DefaultFailureAccrualMinPenalty     = "1s"
	DefaultFailureAccrualMaxPenalty     = "1m"
	DefaultFailureAccrualJitter         = 0.5

	// PolicyControllerName is the controllerName of the route status
	// parents the policy controller writes.
	PolicyControllerName = "linkerd.io/policy-controller"
)

// The jaeger extension (linkerd-jaeger's names).
const (
	JaegerSelector = "linkerd.io/extension=jaeger"
	CheckJaeger    = "linkerd-jaeger"
	// JaegerWebhookConfig is the jaeger injector's MutatingWebhookConfiguration.
	JaegerWebhookConfig = "linkerd-jaeger-injector-webhook-config"
)

// The viz extension (linkerd-viz's names).
const (
	VizNamespace = "linkerd-viz"
	// VizShowDashboard is `viz dashboard --show`'s value that opens the
	// dashboard itself (the others are grafana and url).
	VizShowDashboard = "linkerd"
	// VizSelector selects the extension's objects (label linkerd.io/extension).
	VizSelector = "linkerd.io/extension=viz"
	CheckViz    = "linkerd-viz"
	// The in-cluster addresses of viz's Prometheus and metrics API.
	VizPrometheusURL  = "http://prometheus.linkerd-viz.svc.cluster.local:9090"
	VizMetricsAPIAddr = "metrics-api.linkerd-viz.svc.cluster.local:8085"
	// The tap server: its ServiceAccount (whose identity proxies serve tap
	// to), Service and port, and the proxy variable's value format
	// (ServiceAccount, namespace, control-plane namespace, trust domain).
	VizTapName           = "tap"
	VizTapPort           = 8089
	VizTapIdentityFormat = "tap.%s.serviceaccount.identity.%s.%s"
	// TapAPIGroup is the API group RBAC grants tap in (verb watch,
	// resources <plural>/tap).
	TapAPIGroup = "tap.linkerd.io"
)

// PolicyGroup is the API group of Linkerd's policy CRDs (Server,
// AuthorizationPolicy, HTTPRoute, ...).
const PolicyGroup = "policy.linkerd.io"

// PolicyComponent is the policy controller's name: its Service and the
// source of its Events.
const PolicyComponent = "linkerd-policy"
