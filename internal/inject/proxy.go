package inject

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weftmesh/weft/internal/compat"
)

// config is the proxy's configuration after the pod's and the namespace's
// config.linkerd.io/* overrides.
type config struct {
	namespace                       string
	mode                            string
	logLevel                        string
	await, nativeSidecar, shutdown  bool
	disableTap                      bool
	vizNamespace                    string
	opaquePorts                     string // the pod's opaque ports (annotation)
	skipInbound, skipOutbound       string
	skipSubnets                     string
	shutdownGrace                   string
	outboundConnect, inboundConnect string
	resources                       corev1.ResourceRequirements
	workers                         Workers // LINKERD2_PROXY_CORES_*: proxy.runtime.workers and the CPU annotations
	defaultPolicy                   string  // config.linkerd.io/default-inbound-policy
	requireIdentity                 string  // ports
	probes                          string  // the app's HTTP probes, PORT/PATH,...
	accessLog                       string  // apache or json
	preserveClientAddr              bool    // Weft's config.weft.io/preserve-client-address
}

func resolve(w *Workload, v Values, o Options) (config, error) {
	get := func(key string) (string, bool) {
		if val, ok := w.PodMeta.Annotations[key]; ok {
			return val, true
		}
		val, ok := o.NSAnnotations[key]
		return val, ok
	}
	c := config{namespace: w.Namespace, mode: o.Mode, logLevel: v.Proxy.LogLevel, await: v.Proxy.Await,
		nativeSidecar: v.Proxy.NativeSidecar, shutdown: v.Proxy.EnableShutdown, shutdownGrace: v.Proxy.ShutdownGracePeriod,
		outboundConnect: v.Proxy.OutboundConnect, inboundConnect: v.Proxy.InboundConnect,
		skipInbound: v.ProxyInit.IgnoreInboundPorts, skipOutbound: v.ProxyInit.IgnoreOutboundPorts, skipSubnets: v.ProxyInit.SkipSubnets}
	if c.namespace == "" {
		return c, fmt.Errorf("%s/%s has no namespace", w.Kind, w.Name)
	}
	if c.vizNamespace = o.VizNamespace; c.vizNamespace == "" {
		c.vizNamespace = compat.VizNamespace
	}
	var errs []string
	bad := func(key, val, want string) { errs = append(errs, fmt.Sprintf("%s=%q: want %s", key, val, want)) }
	boolean := func(key string, dst *bool) {
		if val, ok := get(key); ok {
			switch strings.ToLower(val) {
			case "enabled", "true":
				*dst = true
			case "disabled", "false":
				*dst = false
			default:
				bad(key, val, "enabled or disabled")
			}
		}
	}
	boolean(compat.AnnotationProxyAwait, &c.await)
	boolean(compat.AnnotationNativeSidecar, &c.nativeSidecar)
	boolean(compat.AnnotationProxyAdminShutdown, &c.shutdown)
	boolean(compat.AnnotationDisableTap, &c.disableTap)
	boolean(compat.AnnotationPreserveClientAddress, &c.preserveClientAddr)
	if val, ok := get(compat.AnnotationProxyLogLevel); ok {
		c.logLevel = val
	}
	// Linkerd's proxy documents the alpha name; the stable one wins.
	for _, key := range []string{compat.AnnotationAccessLog, compat.AnnotationAccessLogAlpha} {
		if val, ok := get(key); ok {
			if val != compat.AccessLogApache && val != compat.AccessLogJSON {
				bad(key, val, compat.AccessLogApache+" or "+compat.AccessLogJSON)
			} else {
				c.accessLog = val
			}
			break
		}
	}
	for key, dst := range map[string]*string{compat.AnnotationShutdownGracePeriod: &c.shutdownGrace,
		compat.AnnotationOutboundConnect: &c.outboundConnect, compat.AnnotationInboundConnect: &c.inboundConnect} {
		if val, ok := get(key); ok {
			if d, err := time.ParseDuration(val); err != nil || d < 0 {
				bad(key, val, "a duration such as 30s")
			} else {
				*dst = val
			}
		}
	}
	ports := func(key string, dst *string, base string) {
		val, ok := get(key)
		if !ok {
			return
		}
		for _, part := range strings.Split(val, ",") {
			if _, _, err := portRange(strings.TrimSpace(part)); err != nil {
				bad(key, val, "comma-separated ports or ranges such as 25,4000-4100")
				return
			}
		}
		*dst = joinNonEmpty(base, val)
	}
	ports(compat.AnnotationSkipInboundPorts, &c.skipInbound, v.ProxyInit.IgnoreInboundPorts)
	ports(compat.AnnotationSkipOutboundPorts, &c.skipOutbound, v.ProxyInit.IgnoreOutboundPorts)
	if val, ok := get(compat.AnnotationSkipSubnets); ok {
		c.skipSubnets = joinNonEmpty(v.ProxyInit.SkipSubnets, val)
	}
	if _, ok := get(compat.AnnotationOpaquePorts); ok {
		ports(compat.AnnotationOpaquePorts, &c.opaquePorts, "")
		c.opaquePorts = strings.TrimSpace(c.opaquePorts)
	} else {
		filtered, err := filterPorts(v.Proxy.OpaquePorts, containerPorts(w.PodSpec))
		if err != nil {
			return c, fmt.Errorf("proxy.opaquePorts: %w", err)
		}
		c.opaquePorts = filtered
	}
	c.resources = corev1.ResourceRequirements{}
	for _, r := range []struct {
		key, def string
		list     *corev1.ResourceList
		name     corev1.ResourceName
	}{
		{compat.AnnotationProxyCPURequest, v.Proxy.Resources.CPU.Request, &c.resources.Requests, corev1.ResourceCPU},
		{compat.AnnotationProxyCPULimit, v.Proxy.Resources.CPU.Limit, &c.resources.Limits, corev1.ResourceCPU},
		{compat.AnnotationProxyMemoryRequest, v.Proxy.Resources.Memory.Request, &c.resources.Requests, corev1.ResourceMemory},
		{compat.AnnotationProxyMemoryLimit, v.Proxy.Resources.Memory.Limit, &c.resources.Limits, corev1.ResourceMemory},
	} {
		val := r.def
		if a, ok := get(r.key); ok {
			val = a
		}
		if val == "" {
			continue
		}
		q, err := resource.ParseQuantity(val)
		if err != nil {
			bad(r.key, val, "a Kubernetes quantity such as 100m or 64Mi")
			continue
		}
		if *r.list == nil {
			*r.list = corev1.ResourceList{}
		}
		(*r.list)[r.name] = q
	}
	c.workers = v.Proxy.Runtime.Workers
	if v.Proxy.Cores > 0 { // Linkerd's deprecated proxy.cores: that many cores
		c.workers = Workers{Minimum: v.Proxy.Cores, Maximum: v.Proxy.Cores}
	} else {
		// As Linkerd's injector: the proxy uses at least its CPU request
		// and at most its limit, in whole cores rounded up.
		if q, ok := c.resources.Requests[corev1.ResourceCPU]; ok && q.Sign() > 0 {
			c.workers.Minimum = max(c.workers.Minimum, wholeCores(q))
		}
		if q, ok := c.resources.Limits[corev1.ResourceCPU]; ok && q.Sign() > 0 {
			c.workers.Maximum = wholeCores(q)
		}
		if val, ok := get(compat.AnnotationProxyCPURatioLimit); ok {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || !(f > 0 && f <= 1) {
				bad(compat.AnnotationProxyCPURatioLimit, val, "a share of the node's CPUs in (0, 1], such as 0.25")
			} else {
				c.workers.MaximumCPURatio = f
			}
		}
	}
	if err := v.Proxy.check(); err != nil {
		return c, err
	}
	c.workers.Minimum = max(c.workers.Minimum, 1)
	if err := resolvePolicy(&c, w, v, get); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("bad annotation: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "," + b
}

// wholeCores is a CPU quantity in whole cores, rounded up.
func wholeCores(q resource.Quantity) int {
	return int((q.MilliValue() + 999) / 1000)
}

// positive formats n, or "" when it is not above 0 (unset).
func positive(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// ratio formats f, or "" when it is 0 (unset).
func ratio(f float64) string {
	if f == 0 {
		return ""
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

func proxyContainer(v Values, c config) corev1.Container {
	env := []corev1.EnvVar{
		fieldEnv(compat.EnvPodName, "metadata.name"),
		fieldEnv(compat.EnvPodNamespace, "metadata.namespace"),
		fieldEnv(compat.EnvPodNodeName, "spec.nodeName"),
		fieldEnv("_pod_sa", "spec.serviceAccountName"),
		// After the fieldRefs it references: the kubelet expands $(...)
		// only from variables defined earlier in the list.
		{Name: compat.EnvDestinationContext, Value: compat.DestinationContextReference},
		{Name: "_l5d_ns", Value: v.ControllerNamespace},
		{Name: "_l5d_trustdomain", Value: v.IdentityTrustDomain},
		{Name: compat.EnvLog, Value: c.logLevel},
		{Name: compat.EnvDestinationSvcAddr, Value: fmt.Sprintf(compat.DestinationServiceAddrFormat, v.ControllerNamespace, v.ClusterDomain)},
		{Name: compat.EnvPolicySvcAddr, Value: fmt.Sprintf(compat.PolicyServiceAddrFormat, v.ControllerNamespace, v.ClusterDomain)},
		{Name: compat.EnvControlListenAddr, Value: compat.DefaultControlAddr},
		{Name: compat.EnvAdminListenAddr, Value: compat.DefaultAdminAddr},
		{Name: compat.EnvOutboundListenAddr, Value: compat.DefaultOutboundAddr},
		{Name: compat.EnvInboundListenAddr, Value: compat.DefaultInboundAddr},
	}
	if !v.DisableIPv6 {
		// Both families: linkerd-init redirects IPv6 too. These win over
		// the single-address variables above (kept for older proxies).
		env = append(env,
			corev1.EnvVar{Name: compat.EnvOutboundListenAddrs, Value: compat.DefaultOutboundAddr + "," + compat.DefaultOutboundAddrIPv6},
			corev1.EnvVar{Name: compat.EnvInboundListenAddrs, Value: compat.DefaultInboundAddr + "," + compat.DefaultInboundAddrIPv6})
	}
	env = append(env, []corev1.EnvVar{
		{Name: compat.EnvOpaquePorts, Value: c.opaquePorts},
		{Name: compat.EnvIdentityDir, Value: compat.IdentityDirPath},
		{Name: compat.EnvTrustAnchors, Value: v.IdentityTrustAnchorsPEM},
		{Name: compat.EnvIdentityTokenFile, Value: compat.IdentityTokenFile},
		{Name: compat.EnvIdentitySvcAddr, Value: fmt.Sprintf(compat.IdentityServiceAddrFormat, v.ControllerNamespace, v.ClusterDomain)},
		{Name: compat.EnvIdentityLocalName, Value: compat.ProxyIdentityLocalNameReference},
		{Name: compat.EnvIdentitySvcName, Value: fmt.Sprintf(compat.IdentityServiceNameFormat, v.ControllerNamespace, v.ControllerNamespace, v.IdentityTrustDomain)},
		// Destination and policy are reached over mTLS; both controllers
		// run as the linkerd-destination ServiceAccount, as in Linkerd.
		{Name: compat.EnvDestinationSvcName, Value: fmt.Sprintf(compat.DestinationServiceNameFormat, v.ControllerNamespace, v.ControllerNamespace, v.IdentityTrustDomain)},
		{Name: compat.EnvPolicySvcName, Value: fmt.Sprintf(compat.DestinationServiceNameFormat, v.ControllerNamespace, v.ControllerNamespace, v.IdentityTrustDomain)},
	}...)
	env = append(env, policyEnv(v, c)...)
	if !c.disableTap {
		// Tap is served to viz's tap server only (internal/tap); harmless
		// until viz is installed, so no restart is needed afterwards when
		// viz goes to linkerd-viz (pods injected before viz was installed
		// in another namespace name linkerd-viz's tap server: restart them).
		env = append(env, corev1.EnvVar{Name: compat.EnvTapSvcName,
			Value: fmt.Sprintf(compat.VizTapIdentityFormat, c.vizNamespace, v.ControllerNamespace, v.IdentityTrustDomain)})
	}
	// The optional ones, set only when asked for, in name order.
	ifTrue := func(b bool) string {
		if b {
			return "true"
		}
		return ""
	}
	for _, e := range []corev1.EnvVar{
		{Name: compat.EnvAccessLog, Value: c.accessLog},
		// Both names of the minimum, as Linkerd's chart writes them.
		{Name: compat.EnvProxyCores, Value: strconv.Itoa(c.workers.Minimum)},
		{Name: compat.EnvProxyCoresMin, Value: strconv.Itoa(c.workers.Minimum)},
		{Name: compat.EnvProxyCoresMax, Value: positive(c.workers.Maximum)},
		{Name: compat.EnvProxyCoresMaxRatio, Value: ratio(c.workers.MaximumCPURatio)},
		{Name: compat.EnvInboundConnect, Value: c.inboundConnect},
		{Name: compat.EnvIngressMode, Value: ifTrue(c.mode == compat.InjectIngress)},
		{Name: compat.EnvOutboundConnect, Value: c.outboundConnect},
		{Name: compat.EnvShutdownEnabled, Value: ifTrue(c.shutdown)},
		{Name: compat.EnvShutdownGrace, Value: c.shutdownGrace},
		{Name: compat.EnvPreserveClientAddress, Value: ifTrue(c.preserveClientAddr)},
	} {
		if e.Value != "" {
			env = append(env, e)
		}
	}
	uid := v.Proxy.UID
	yes, no := true, false
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromInt32(compat.AdminPort)}}, InitialDelaySeconds: 1, TimeoutSeconds: 1}
	}
	pc := corev1.Container{
		Name:            compat.ProxyContainerName,
		Image:           v.Proxy.Image.ref(v.Version),
		ImagePullPolicy: corev1.PullPolicy(v.Proxy.Image.PullPolicy),
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: compat.ProxyPortName, ContainerPort: compat.InboundPort},
			{Name: compat.AdminPortName, ContainerPort: compat.AdminPort},
		},
		LivenessProbe:  probe("/live"),
		ReadinessProbe: probe("/ready"),
		Resources:      c.resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes,
			AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts: []corev1.VolumeMount{
			{Name: compat.IdentityEndEntityVolume, MountPath: compat.IdentityDirPath},
			{Name: compat.IdentityTokenVolume, MountPath: compat.IdentityTokenDir},
		},
	}
	if c.preserveClientAddr {
		preserveClientAddrProxy(pc.SecurityContext, v)
	}
	if c.await && !c.nativeSidecar && len(v.Proxy.AwaitCommand) > 0 {
		pc.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: v.Proxy.AwaitCommand}}}
	}
	if c.nativeSidecar {
		// A native sidecar is "started" once its startup probe passes: the
		// app containers start after the proxy is ready.
		pc.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/ready", Port: intstr.FromInt32(compat.AdminPort)}}, PeriodSeconds: 1, FailureThreshold: 120}
	}
	return pc
}

func imageRef(image, version string) string {
	if version == "" || strings.Contains(image[strings.LastIndex(image, "/")+1:], ":") {
		return image
	}
	return image + ":" + version
}

func initContainer(v Values, c config) corev1.Container {
	args := []string{
		"--incoming-proxy-port", strconv.Itoa(compat.InboundPort),
		"--outgoing-proxy-port", strconv.Itoa(compat.OutboundPort),
		"--proxy-uid", strconv.FormatInt(v.Proxy.UID, 10),
		"--inbound-ports-to-ignore", joinNonEmpty(fmt.Sprintf("%d,%d", compat.ControlPort, compat.AdminPort), c.skipInbound),
	}
	if c.skipOutbound != "" {
		args = append(args, "--outbound-ports-to-ignore", c.skipOutbound)
	}
	if c.skipSubnets != "" {
		args = append(args, "--subnets-to-ignore", c.skipSubnets)
	}
	if v.ProxyInit.IptablesMode != "" {
		args = append(args, "--firewall-bin-path", "iptables-"+v.ProxyInit.IptablesMode)
	}
	if v.DisableIPv6 {
		args = append(args, "--ipv6=false") // linkerd-init writes ip6tables rules unless told not to
	}
	if c.preserveClientAddr {
		args = append(args, preserveClientAddrInitArgs(v)...)
	}
	yes, no := true, false
	uid := int64(65534)
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes, Privileged: &no,
		Capabilities:   &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if v.ProxyInit.RunAsRoot {
		uid = 0
		sc.RunAsNonRoot = &no
	} else {
		sc.RunAsNonRoot = &yes
	}
	sc.RunAsUser, sc.RunAsGroup = &uid, &uid
	return corev1.Container{
		Name:                     compat.InitContainerName,
		Image:                    v.ProxyInit.Image.ref(v.Version),
		ImagePullPolicy:          corev1.PullPolicy(v.Proxy.Image.PullPolicy),
		Args:                     args,
		SecurityContext:          sc,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             []corev1.VolumeMount{{Name: compat.XtablesLockVolume, MountPath: "/run"}},
	}
}

func volumes() []corev1.Volume {
	expiry := int64(86400)
	return []corev1.Volume{
		{Name: compat.XtablesLockVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: compat.IdentityEndEntityVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: compat.IdentityTokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: compat.AudienceIdentity, ExpirationSeconds: &expiry, Path: compat.IdentityTokenVolume}}}}}},
	}
}
