// Package metricsapi is viz's metrics API: golden metrics (success rate,
// requests per second, latency percentiles, TCP connections, meshed pods)
// and edges between workloads, computed from the proxies' metrics in
// Prometheus and served as JSON under /api/v1/. It holds the queries, the
// HTTP server and the Go client that the CLI and the dashboard use; it does
// not import the controller's packages.
package metricsapi

import (
	"fmt"
	"strings"
)

// Kind is a resource type the API computes metrics for.
type Kind string

// The kinds, by their Kubernetes singular names.
const (
	KindNamespace   Kind = "namespace"
	KindDeployment  Kind = "deployment"
	KindStatefulSet Kind = "statefulset"
	KindDaemonSet   Kind = "daemonset"
	KindJob         Kind = "job"
	KindPod         Kind = "pod"
	KindService     Kind = "service"
)

// Kinds lists every kind, in the order errors name them.
var Kinds = []Kind{KindNamespace, KindDeployment, KindStatefulSet, KindDaemonSet, KindJob, KindPod, KindService}

var kindAliases = map[string]Kind{
	"ns": KindNamespace, "namespaces": KindNamespace,
	"deploy": KindDeployment, "deployments": KindDeployment,
	"sts": KindStatefulSet, "statefulsets": KindStatefulSet,
	"ds": KindDaemonSet, "daemonsets": KindDaemonSet,
	"jobs": KindJob,
	"po":   KindPod, "pods": KindPod,
	"svc": KindService, "services": KindService,
}

// UnknownKindError is a resource type the API does not know.
type UnknownKindError struct{ Kind string }

func (e *UnknownKindError) Error() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return fmt.Sprintf("unknown resource type %q: must be one of %s (or their short names: ns, deploy, sts, ds, po, svc)",
		e.Kind, strings.Join(names, ", "))
}

// ParseKind accepts a kind's singular, plural or short name, any case.
func ParseKind(s string) (Kind, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	for _, k := range Kinds {
		if l == string(k) {
			return k, nil
		}
	}
	if k, ok := kindAliases[l]; ok {
		return k, nil
	}
	return "", &UnknownKindError{Kind: s}
}

// ParseResource parses "kind" or "kind/name" (deploy/web).
func ParseResource(s string) (Kind, string, error) {
	kind, name, _ := strings.Cut(s, "/")
	k, err := ParseKind(kind)
	if err != nil {
		return "", "", err
	}
	return k, name, nil
}

// label is the Prometheus label naming a proxy's own resource of this kind,
// as the seeds' PodMonitor relabelings produce it from the pod's
// linkerd.io/proxy-<kind> labels ("" for services: a proxy does not know the
// services it backs).
func (k Kind) label() string {
	switch k {
	case KindJob:
		return "k8s_job"
	case KindService:
		return ""
	}
	return string(k)
}

// dstLabel is the outbound series' label naming the destination's resource
// of this kind.
func (k Kind) dstLabel() string {
	return "dst_" + string(k)
}

// hasPods tells whether meshed/total pod counts make sense for the kind.
func (k Kind) hasPods() bool { return k != KindService }
