package inboundpolicy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/weftmesh/weft/internal/compat"
)

// EventReasonInvalid is the reason of Events on resources the index cannot use.
const EventReasonInvalid = "InvalidPolicy"

// Watcher feeds an Index from the API server and reports problems as
// Warning Events on the resources concerned.
type Watcher struct {
	Index    *Index
	log      *slog.Logger
	recorder record.EventRecorder
	synced   []cache.InformerSynced
	kick     chan struct{}
	start    func(context.Context)
	// awaiting are the kinds the API server did not serve at start
	// (CRDs installed later): Run watches each once it is served.
	awaiting []kindGVR
	client   kubernetes.Interface
	df       dynamicinformer.DynamicSharedInformerFactory

	mu       sync.Mutex
	reported map[string]string // kind/ns/name → last message reported
}

type kindGVR struct {
	kind string
	gvr  schema.GroupVersionResource
}

var kinds = []kindGVR{
	{KindServer, ServersGVR}, {KindServerAuthorization, ServerAuthzGVR}, {KindAuthorizationPolicy, AuthzPolicyGVR},
	{KindMeshTLSAuthn, MeshTLSAuthnGVR}, {KindNetworkAuthn, NetworkAuthnGVR}, {KindHTTPRoute, HTTPRoutesGVR},
	{KindRateLimitPolicy, RateLimitPolicyGVR},
}

// NewWatcher sets up informers over the policy resources, pods and
// namespaces; Run starts them.
func NewWatcher(client kubernetes.Interface, dyn dynamic.Interface, idx *Index, log *slog.Logger) *Watcher {
	w := &Watcher{Index: idx, log: log, kick: make(chan struct{}, 1), reported: map[string]string{}}
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	w.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: compat.PolicyComponent})

	df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	w.client, w.df = client, df
	for _, k := range kinds {
		if !served(client, k.gvr) {
			// No CRD, no such resources: nothing to wait for now; Run
			// watches it once its CRD is installed.
			log.Warn("policy resource not served by the API server (CRD missing?); treating it as empty until it is", "resource", k.gvr.String())
			w.awaiting = append(w.awaiting, k)
			continue
		}
		w.synced = append(w.synced, w.watchKind(k))
	}
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	pods := f.Core().V1().Pods().Informer()
	pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.pod(obj, false) },
		UpdateFunc: func(_, obj any) { w.pod(obj, false) },
		DeleteFunc: func(obj any) { w.pod(obj, true) },
	})
	nss := f.Core().V1().Namespaces().Informer()
	nss.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.namespace(obj, false) },
		UpdateFunc: func(_, obj any) { w.namespace(obj, false) },
		DeleteFunc: func(obj any) { w.namespace(obj, true) },
	})
	w.synced = append(w.synced, pods.HasSynced, nss.HasSynced)
	w.start = func(ctx context.Context) {
		df.Start(ctx.Done())
		f.Start(ctx.Done())
	}
	return w
}

// served reports whether the API server serves gvr. Only a definite "not
// found" says no: on other errors it retries for a while, then assumes the
// resource exists (its informer then holds streams back until it syncs,
// rather than policies being computed without it).
func served(client kubernetes.Interface, gvr schema.GroupVersionResource) bool {
	var list *metav1.APIResourceList
	var err error
	for i := 0; i < 20; i++ {
		if list, err = client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String()); err == nil || apierrors.IsNotFound(err) {
			break
		}
		time.Sleep(time.Duration(i+1) * 100 * time.Millisecond)
	}
	switch {
	case apierrors.IsNotFound(err):
		return false
	case err != nil:
		return true
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true
		}
	}
	return false
}

// watchKind adds k's informer to the dynamic factory (started by the
// caller).
func (w *Watcher) watchKind(k kindGVR) cache.InformerSynced {
	inf := w.df.ForResource(k.gvr).Informer()
	kind := k.kind
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.upsert(kind, obj) },
		UpdateFunc: func(_, obj any) { w.upsert(kind, obj) },
		DeleteFunc: func(obj any) { w.remove(kind, obj) },
	})
	return inf.HasSynced
}

// awaitServed polls (every 5 s) until k is served, then watches it.
func (w *Watcher) awaitServed(ctx context.Context, k kindGVR) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if served(w.client, k.gvr) {
			w.watchKind(k)
			w.df.Start(ctx.Done())
			w.log.Info("policy resource now served; watching it", "resource", k.gvr.String())
			return
		}
	}
}

// Run starts the informers, waits for their caches and then reports
// problems after every change, until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	w.start(ctx)
	for _, k := range w.awaiting {
		go w.awaitServed(ctx, k)
	}
	if !cache.WaitForCacheSync(ctx.Done(), w.synced...) {
		return fmt.Errorf("policy informers did not sync")
	}
	w.log.Info("inbound policy index synced")
	for {
		w.report()
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		}
	}
}

// Synced reports whether every informer has synced.
func (w *Watcher) Synced() bool {
	for _, s := range w.synced {
		if !s() {
			return false
		}
	}
	return true
}

func (w *Watcher) changed() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watcher) upsert(kind string, obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	w.Index.Upsert(kind, u)
	w.changed()
}

func (w *Watcher) remove(kind string, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		w.Index.Delete(kind, u.GetNamespace(), u.GetName())
		w.changed()
	}
}

func (w *Watcher) pod(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if deleted {
		w.Index.DeletePod(p.Namespace, p.Name)
	} else {
		w.Index.SetPod(PodFrom(p))
	}
}

func (w *Watcher) namespace(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	if deleted {
		w.Index.DeleteNamespace(ns.Name)
	} else {
		w.Index.SetNamespace(ns.Name, ns.Annotations)
	}
	w.changed()
}

// report emits a Warning Event for each new or changed problem.
func (w *Watcher) report() {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range w.Index.Problems() {
		key := p.Kind + "/" + p.Namespace + "/" + p.Name
		seen[key] = true
		if w.reported[key] == p.Message {
			continue
		}
		w.reported[key] = p.Message
		w.log.Warn("invalid policy resource", "kind", p.Kind, "namespace", p.Namespace, "name", p.Name, "problem", p.Message)
		w.recorder.Event(p.Object, corev1.EventTypeWarning, EventReasonInvalid, p.Message)
	}
	for key := range w.reported {
		if !seen[key] {
			delete(w.reported, key)
		}
	}
}
