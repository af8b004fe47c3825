package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/inboundpolicy"
)

// watchServers starts an informer over Linkerd's Servers
// (policy.linkerd.io) when the cluster serves them: a pod port that the
// Server selecting it declares proxyProtocol opaque is an opaque
// endpoint, as with config.linkerd.io/opaque-ports, so clients skip
// detection and use the opaque transport. Without the CRD only the
// annotations mark opaque ports.
func (b *Backend) watchServers(client kubernetes.Interface, dyn dynamic.Interface, stop <-chan struct{}) error {
	lister, err := b.watchCRD(client, dyn, inboundpolicy.ServersGVR, stop,
		"Servers are not served (install the CRDs): only config.linkerd.io/opaque-ports marks opaque ports",
		func(u *unstructured.Unstructured) {
			// A Server may select any pod of its namespace.
			b.mu.Lock()
			b.dirtyNS[u.GetNamespace()] = true
			b.mu.Unlock()
		})
	b.servers = lister
	return err
}

// serverOpaque reports whether the Server selecting the pod's port
// declares it opaque (the Server the policy controller picks for it).
func (b *Backend) serverOpaque(pod *corev1.Pod, port int32) bool {
	if b.servers == nil || pod == nil || port <= 0 || port > 65535 {
		return false
	}
	objs, err := b.servers.ByNamespace(pod.Namespace).List(labels.Everything())
	if err != nil || len(objs) == 0 {
		return false
	}
	servers := make([]*unstructured.Unstructured, 0, len(objs))
	anyOpaque := false
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			servers = append(servers, u)
			proto, _, _ := unstructured.NestedString(u.Object, "spec", "proxyProtocol")
			anyOpaque = anyOpaque || proto == string(authz.ProtocolOpaque)
		}
	}
	if !anyOpaque {
		return false // the common case, without decoding every Server for every endpoint
	}
	return inboundpolicy.ServerProtocol(servers, inboundpolicy.PodFrom(pod), uint16(port)) == authz.ProtocolOpaque
}
