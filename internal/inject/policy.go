package inject

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
)

// resolvePolicy fills the proxy's static inbound policy: the default
// policy (workload annotation, else namespace annotation, else the chart's
// proxy.defaultInboundPolicy), the ports requiring identity, and the
// application's HTTP probes (admitted by any default policy).
func resolvePolicy(c *config, w *Workload, v Values, get func(string) (string, bool)) error {
	c.defaultPolicy = v.Proxy.DefaultInboundPolicy
	if val, ok := get(compat.AnnotationDefaultInboundPolicy); ok {
		c.defaultPolicy = val
	}
	d, err := authz.ParseDefaultPolicy(c.defaultPolicy)
	if err != nil {
		return fmt.Errorf("%s: %v", compat.AnnotationDefaultInboundPolicy, err)
	}
	c.defaultPolicy = string(d)
	c.requireIdentity = v.Proxy.RequireIdentityOnInboundPorts
	if val, ok := get(compat.AnnotationRequireIdentityPorts); ok {
		c.requireIdentity = strings.TrimSpace(val)
	}
	if c.requireIdentity != "" {
		if _, err := authz.ParsePorts(c.requireIdentity); err != nil {
			return fmt.Errorf("%s=%q: %v", compat.AnnotationRequireIdentityPorts, c.requireIdentity, err)
		}
	}
	c.probes = probeList(w.PodSpec)
	return nil
}

// probeList lists the HTTP probes of the pod's application containers as
// PORT/PATH (named ports resolved, queries dropped), sorted and unique.
func probeList(spec corev1.PodSpec) string {
	seen := map[string]bool{}
	for _, ctr := range spec.Containers {
		if ctr.Name == compat.ProxyContainerName {
			continue
		}
		for _, p := range []*corev1.Probe{ctr.LivenessProbe, ctr.ReadinessProbe, ctr.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			port := p.HTTPGet.Port.IntValue()
			if p.HTTPGet.Port.StrVal != "" {
				port = 0
				for _, cp := range ctr.Ports {
					if cp.Name == p.HTTPGet.Port.StrVal {
						port = int(cp.ContainerPort)
					}
				}
			}
			if port <= 0 || port > 65535 || port == compat.AdminPort {
				continue
			}
			path, _, _ := strings.Cut(p.HTTPGet.Path, "?")
			path = strings.TrimPrefix(path, "/")
			if strings.ContainsAny(path, ", ") {
				continue // cannot be listed; such a probe needs an explicit authorization
			}
			seen[strconv.Itoa(port)+"/"+path] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// policyEnv is the proxy's inbound policy environment, Linkerd's names.
func policyEnv(v Values, c config) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: compat.EnvPolicyWorkload, Value: compat.PolicyWorkloadReference},
		{Name: compat.EnvInboundDefaultPolicy, Value: c.defaultPolicy},
		{Name: compat.EnvPolicyClusterNetworks, Value: v.ClusterNetworks},
	}
	if c.requireIdentity != "" {
		env = append(env, corev1.EnvVar{Name: compat.EnvInboundRequireID, Value: c.requireIdentity})
	}
	if c.probes != "" {
		env = append(env, corev1.EnvVar{Name: compat.EnvInboundProbes, Value: c.probes})
	}
	return env
}
