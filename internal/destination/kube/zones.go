package kube

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/internal/destination"
)

var _ destination.ZoneResolver = (*Backend)(nil)

// ZoneOf implements destination.ZoneResolver: the node's
// topology.kubernetes.io/zone label, "" when the node or its label is not
// known.
func (b *Backend) ZoneOf(node string) string {
	if node == "" {
		return ""
	}
	n, err := b.nodes.Get(node)
	if err != nil {
		return ""
	}
	return n.Labels[corev1.LabelTopologyZone]
}

// watchNodes caches the nodes' names and zones, and marks every watch to be
// refreshed when a node's zone changes (a node with a zone joins or leaves,
// or its label changes): the server filters each stream's snapshots with
// its caller's zone. Other node updates (status, heartbeats) refresh
// nothing.
func (b *Backend) watchNodes(nodes coreinformers.NodeInformer) error {
	if err := nodes.Informer().SetTransform(slimNode); err != nil {
		return fmt.Errorf("node transform: %w", err)
	}
	b.nodes = nodes.Lister()
	zoneChanged := func() {
		b.mu.Lock()
		b.zoneEvent = true
		b.mu.Unlock()
		b.changed()
	}
	_, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if nodeZone(obj) != "" {
				zoneChanged()
			}
		},
		UpdateFunc: func(old, cur any) {
			if nodeZone(old) != nodeZone(cur) {
				zoneChanged()
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if nodeZone(obj) != "" {
				zoneChanged()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("node events: %w", err)
	}
	return nil
}

func nodeZone(obj any) string {
	if n, ok := obj.(*corev1.Node); ok {
		return n.Labels[corev1.LabelTopologyZone]
	}
	return ""
}

// slimNode is the node informer's transform: a name and a zone are all the
// backend reads of a Node.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion}}
	if z, ok := n.Labels[corev1.LabelTopologyZone]; ok {
		slim.Labels = map[string]string{corev1.LabelTopologyZone: z}
	}
	return slim, nil
}
