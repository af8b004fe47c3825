package injector

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/internal/compat"
)

// KubeCluster answers the webhook's questions from informer caches:
// namespaces, and the metadata only of ReplicaSets and Jobs (to find a new
// pod's Deployment or CronJob), so that admission makes no API call in the
// common case.
type KubeCluster struct {
	client      kubernetes.Interface
	namespaces  corelisters.NamespaceLister
	replicaSets cache.GenericLister
	jobs        cache.GenericLister
}

var _ Cluster = (*KubeCluster)(nil)

// NewKubeCluster starts the informers and waits for their caches.
func NewKubeCluster(client kubernetes.Interface, meta metadata.Interface, stop <-chan struct{}) (*KubeCluster, error) {
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	lister := f.Core().V1().Namespaces().Lister()
	mf := metadatainformer.NewSharedInformerFactory(meta, 10*time.Minute)
	rs := mf.ForResource(appsv1.SchemeGroupVersion.WithResource("replicasets")).Lister()
	jobs := mf.ForResource(batchv1.SchemeGroupVersion.WithResource("jobs")).Lister()
	f.Start(stop)
	mf.Start(stop)
	for typ, ok := range f.WaitForCacheSync(stop) {
		if !ok {
			return nil, fmt.Errorf("cache of %v did not sync", typ)
		}
	}
	for gvr, ok := range mf.WaitForCacheSync(stop) {
		if !ok {
			return nil, fmt.Errorf("cache of %v did not sync", gvr)
		}
	}
	return &KubeCluster{client: client, namespaces: lister, replicaSets: rs, jobs: jobs}, nil
}

// NamespaceAnnotations reads the cache, then the API for a namespace made
// a moment ago.
func (k *KubeCluster) NamespaceAnnotations(ctx context.Context, name string) (map[string]string, error) {
	ns, err := k.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		ns, err = k.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	return ns.Annotations, nil
}

// VizNamespace is the namespace labelled linkerd.io/extension=viz (the
// viz chart labels the namespace it creates; with helm's
// --create-namespace, label it), from the cache; linkerd-viz when there is
// none, or when several carry the label: labelling a second namespace
// cannot move the tap identity proxies serve away from viz's.
func (k *KubeCluster) VizNamespace() string {
	sel, err := labels.Parse(compat.VizSelector)
	if err != nil {
		return compat.VizNamespace
	}
	list, err := k.namespaces.List(sel)
	if err != nil {
		return compat.VizNamespace
	}
	var names []string
	for _, ns := range list {
		if ns.DeletionTimestamp == nil {
			names = append(names, ns.Name)
		}
	}
	if len(names) != 1 {
		return compat.VizNamespace
	}
	return names[0]
}

// Owner follows ReplicaSet → Deployment and Job → CronJob, from the caches
// (then the API, for an object made a moment ago).
func (k *KubeCluster) Owner(ctx context.Context, namespace string, ref metav1.OwnerReference) (*corev1.ObjectReference, bool, error) {
	var lister cache.GenericLister
	var get func(context.Context) (metav1.Object, error)
	switch ref.Kind {
	case "ReplicaSet":
		lister = k.replicaSets
		get = func(ctx context.Context) (metav1.Object, error) {
			return k.client.AppsV1().ReplicaSets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		}
	case "Job":
		lister = k.jobs
		get = func(ctx context.Context) (metav1.Object, error) {
			return k.client.BatchV1().Jobs(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		}
	}
	if lister != nil {
		var parent metav1.Object
		obj, err := lister.ByNamespace(namespace).Get(ref.Name)
		if err == nil {
			parent, err = meta.Accessor(obj)
		} else if apierrors.IsNotFound(err) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			parent, err = get(ctx)
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s %s/%s: %w", ref.Kind, namespace, ref.Name, err)
		}
		if up := metav1.GetControllerOfNoCopy(parent); up != nil {
			ref = *up
		}
	}
	return &corev1.ObjectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, Namespace: namespace, UID: ref.UID}, true, nil
}

// EventRecorder records Events through the API as component
// "linkerd-proxy-injector"; stop flushes and stops it.
func EventRecorder(client kubernetes.Interface) (recordEvent func(*corev1.ObjectReference, string, string, string), stop func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: compat.InjectorComponent})
	return func(ref *corev1.ObjectReference, eventType, reason, msg string) {
		rec.Event(ref, eventType, reason, msg)
	}, b.Shutdown
}
