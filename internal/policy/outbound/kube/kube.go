// Package kube feeds the outbound index from Kubernetes: Services through
// a typed informer, HTTPRoutes and GRPCRoutes (gateway.networking.k8s.io/v1,
// and policy.linkerd.io HTTPRoute, read at its storage version v1beta3, so
// v1beta2 objects come converted) through dynamic informers, and writes each
// route's status.parents back when what the index says differs from what
// the object holds.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
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
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/weftmesh/weft/internal/policy/outbound"
)

// RouteKind is one watched route resource.
type RouteKind struct {
	GVR  schema.GroupVersionResource
	Kind string
}

// RouteKinds are the route resources the adapter watches when served.
var RouteKinds = []RouteKind{
	{GVR: schema.GroupVersionResource{Group: outbound.GroupGateway, Version: "v1", Resource: "httproutes"}, Kind: outbound.KindHTTP},
	{GVR: schema.GroupVersionResource{Group: outbound.GroupGateway, Version: "v1", Resource: "grpcroutes"}, Kind: outbound.KindGRPC},
	{GVR: schema.GroupVersionResource{Group: outbound.GroupLinkerd, Version: "v1beta3", Resource: "httproutes"}, Kind: outbound.KindHTTP},
}

// Adapter connects an Index to the API server.
type Adapter struct {
	ix      *outbound.Index
	dyn     dynamic.Interface
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	mu      sync.Mutex
	kinds   map[string]RouteKind // group/kind → resource, once watched
	listers map[string]cache.GenericLister
	synced  []cache.InformerSynced
	ready   atomic.Bool
	// StatusWrites counts status updates written (for tests and metrics).
	StatusWrites atomic.Int64
}

// Start watches Services and the route kinds the server serves, feeding
// ix, and writes route status until ctx ends. It returns once the
// informers are started; Ready turns true when they have synced.
func Start(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, ix *outbound.Index, log *slog.Logger) (*Adapter, error) {
	a := &Adapter{ix: ix, dyn: dyn, log: log, kinds: map[string]RouteKind{}, listers: map[string]cache.GenericLister{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	ix.OnStatus(func(keys []string) {
		for _, k := range keys {
			a.queue.Add(k)
		}
	})
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	svc := f.Core().V1().Services().Informer()
	if _, err := svc.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.setService(o) },
		UpdateFunc: func(_, o any) { a.setService(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if s, ok := o.(*corev1.Service); ok {
				ix.DeleteService(s.Namespace, s.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("service informer: %w", err)
	}
	a.synced = append(a.synced, svc.HasSynced)
	df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	for _, rk := range RouteKinds {
		if !served(client, rk.GVR) {
			// CRDs installed after the control plane: watched once served.
			log.Warn("route resource not served yet; watching it once it is", "resource", rk.GVR.String())
			go a.awaitServed(ctx, client, df, rk)
			continue
		}
		synced, err := a.watchKind(df, rk)
		if err != nil {
			return nil, err
		}
		a.synced = append(a.synced, synced)
	}
	f.Start(ctx.Done())
	df.Start(ctx.Done())
	go ix.Run(ctx)
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), a.synced...) {
			a.ready.Store(true)
			log.Info("outbound policy index synced")
			a.writeStatus(ctx)
		}
	}()
	return a, nil
}

// watchKind adds rk's informer to df (started by the caller).
func (a *Adapter) watchKind(df dynamicinformer.DynamicSharedInformerFactory, rk RouteKind) (cache.InformerSynced, error) {
	key := rk.GVR.Group + "/" + rk.Kind
	inf := df.ForResource(rk.GVR)
	group, kind := rk.GVR.Group, rk.Kind
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.setRoute(group, kind, o) },
		UpdateFunc: func(_, o any) { a.setRoute(group, kind, o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if u, ok := o.(*unstructured.Unstructured); ok {
				a.ix.DeleteRoute(group, kind, u.GetNamespace(), u.GetName())
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("%s informer: %w", rk.GVR.Resource, err)
	}
	a.mu.Lock()
	a.kinds[key], a.listers[key] = rk, inf.Lister()
	a.mu.Unlock()
	return inf.Informer().HasSynced, nil
}

// awaitServed polls (every 5 s) until rk is served, then watches it.
func (a *Adapter) awaitServed(ctx context.Context, client kubernetes.Interface, df dynamicinformer.DynamicSharedInformerFactory, rk RouteKind) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !served(client, rk.GVR) {
			continue
		}
		if _, err := a.watchKind(df, rk); err != nil {
			a.log.Error("cannot watch route resource", "resource", rk.GVR.String(), "err", err)
			return
		}
		df.Start(ctx.Done())
		a.log.Info("route resource served now; watching it", "resource", rk.GVR.String())
		return
	}
}

// Ready reports whether every informer has synced.
func (a *Adapter) Ready() bool { return a.ready.Load() }

func served(client kubernetes.Interface, gvr schema.GroupVersionResource) bool {
	rl, err := client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range rl.APIResources {
		if r.Name == gvr.Resource {
			return true
		}
	}
	return false
}

func (a *Adapter) setService(o any) {
	s, ok := o.(*corev1.Service)
	if !ok {
		return
	}
	svc := outbound.Service{Namespace: s.Namespace, Name: s.Name, Annotations: s.Annotations, ClusterIPs: s.Spec.ClusterIPs}
	if len(svc.ClusterIPs) == 0 && s.Spec.ClusterIP != "" {
		svc.ClusterIPs = []string{s.Spec.ClusterIP}
	}
	for _, p := range s.Spec.Ports {
		if p.Port > 0 && p.Port <= 65535 {
			svc.Ports = append(svc.Ports, uint16(p.Port))
		}
	}
	a.ix.SetService(svc)
}

// Decode reads an API object into an outbound.Route. A spec that does not
// decode is kept with an empty spec (no Service parents: not applied).
func Decode(group, kind string, u *unstructured.Unstructured) (*outbound.Route, error) {
	r := &outbound.Route{Group: group, Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(),
		Generation: u.GetGeneration(), Created: u.GetCreationTimestamp().Time, Annotations: u.GetAnnotations()}
	if spec, ok := u.Object["spec"]; ok {
		b, err := json.Marshal(spec)
		if err != nil {
			return r, fmt.Errorf("spec: %w", err)
		}
		if err := json.Unmarshal(b, &r.Spec); err != nil {
			return r, fmt.Errorf("spec: %w", err)
		}
	}
	if parents, ok, _ := unstructured.NestedSlice(u.Object, "status", "parents"); ok {
		b, err := json.Marshal(parents)
		if err == nil {
			err = json.Unmarshal(b, &r.Status)
		}
		if err != nil {
			return r, fmt.Errorf("status: %w", err)
		}
	}
	return r, nil
}

func (a *Adapter) setRoute(group, kind string, o any) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	r, err := Decode(group, kind, u)
	if err != nil {
		a.log.Warn("route does not decode; ignoring its spec", "route", r.Key(), "err", err)
		r.Spec = outbound.RouteSpec{}
	}
	a.ix.SetRoute(r)
}

// writeStatus works the status queue until it shuts down.
func (a *Adapter) writeStatus(ctx context.Context) {
	for {
		key, quit := a.queue.Get()
		if quit {
			return
		}
		if err := a.syncStatus(ctx, key); err != nil {
			a.log.Info("route status not written; will retry", "route", key, "err", err)
			a.queue.AddRateLimited(key)
		} else {
			a.queue.Forget(key)
		}
		a.queue.Done(key)
	}
}

func (a *Adapter) syncStatus(ctx context.Context, key string) error {
	r, parents, ok := a.ix.Status(key, time.Now())
	if !ok {
		return nil
	}
	if reflect.DeepEqual(parents, r.Status) || (len(parents) == 0 && len(r.Status) == 0) {
		return nil
	}
	gk := r.Group + "/" + r.Kind
	a.mu.Lock()
	rk, ok := a.kinds[gk]
	lister := a.listers[gk]
	a.mu.Unlock()
	if !ok {
		return nil
	}
	obj, err := lister.ByNamespace(r.Namespace).Get(r.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	if u.GetGeneration() != r.Generation {
		// The index and the informer's cache are a moment apart: look
		// again shortly rather than trust the next event to come.
		a.queue.AddAfter(key, time.Second)
		return nil
	}
	u = u.DeepCopy()
	var list []any
	b, err := json.Marshal(parents)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	if err := unstructured.SetNestedSlice(u.Object, list, "status", "parents"); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = a.dyn.Resource(rk.GVR).Namespace(r.Namespace).UpdateStatus(cctx, u, metav1.UpdateOptions{FieldManager: "weft-policy"})
	if apierrors.IsConflict(err) {
		return fmt.Errorf("conflict (the informer will bring the newer version): %w", err)
	}
	if err != nil && strings.Contains(err.Error(), "not found") {
		return nil
	}
	if err == nil {
		a.StatusWrites.Add(1)
	}
	return err
}
