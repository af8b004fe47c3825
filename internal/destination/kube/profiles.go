package kube

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/destination"
)

// ServiceProfileGVR is Linkerd's ServiceProfile resource.
var ServiceProfileGVR = schema.GroupVersionResource{Group: compat.ServiceProfileGroup, Version: "v1alpha2", Resource: "serviceprofiles"}

// watchProfiles starts a ServiceProfile informer when the cluster serves
// the CRD (weft install --crds); without it profiles carry no routes.
func (b *Backend) watchProfiles(client kubernetes.Interface, dyn dynamic.Interface, stop <-chan struct{}) error {
	lister, err := b.watchCRD(client, dyn, ServiceProfileGVR, stop, "ServiceProfiles are not served (install the CRDs): profiles carry no routes",
		func(u *unstructured.Unstructured) {
			// A ServiceProfile is named for the service's FQDN.
			name, _, _ := strings.Cut(u.GetName(), ".")
			b.mu.Lock()
			b.dirtyServices[u.GetNamespace()+"/"+name] = true
			b.mu.Unlock()
		})
	b.profiles = lister
	return err
}

// watchCRD starts an informer over a custom resource when the cluster
// serves it (else logs absent and returns a nil lister): on every change
// mark records what to refresh, then the backend refreshes.
func (b *Backend) watchCRD(client kubernetes.Interface, dyn dynamic.Interface, gvr schema.GroupVersionResource, stop <-chan struct{},
	absent string, mark func(*unstructured.Unstructured)) (cache.GenericLister, error) {
	if _, err := client.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String()); err != nil {
		b.log.Info(absent, "err", err)
		return nil, nil
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	inf := f.ForResource(gvr)
	on := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			mark(u)
			b.changed()
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, n any) { on(n) }, DeleteFunc: on}); err != nil {
		return nil, err
	}
	f.Start(stop)
	for gvr, ok := range f.WaitForCacheSync(stop) {
		if !ok {
			return nil, fmt.Errorf("cache of %v did not sync", gvr)
		}
	}
	return inf.Lister(), nil
}

// serviceProfile reads the routes and retry budget of the ServiceProfile
// named fqn in namespace, if there is one.
func (b *Backend) serviceProfile(namespace, fqn string, p *destination.Profile) {
	if b.profiles == nil {
		return
	}
	obj, err := b.profiles.ByNamespace(namespace).Get(fqn)
	if err != nil {
		return
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "routes")
	for _, r := range routes {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		route, err := parseRoute(m)
		if err != nil {
			b.log.Warn("ServiceProfile route skipped", "profile", namespace+"/"+fqn, "err", err)
			continue
		}
		p.Routes = append(p.Routes, route)
	}
	if rb, ok, _ := unstructured.NestedMap(u.Object, "spec", "retryBudget"); ok {
		budget := &destination.RetryBudget{}
		if v, ok := rb["retryRatio"].(float64); ok {
			budget.Ratio = float32(v)
		}
		if v, ok := rb["minRetriesPerSecond"].(int64); ok && v >= 0 {
			budget.MinPerSecond = uint32(v)
		}
		if v, ok := rb["ttl"].(string); ok {
			budget.TTL, _ = time.ParseDuration(v)
		}
		p.RetryBudget = budget
	}
}

func parseRoute(m map[string]any) (destination.Route, error) {
	r := destination.Route{}
	r.Name, _ = m["name"].(string)
	r.Retryable, _ = m["isRetryable"].(bool)
	if t, ok := m["timeout"].(string); ok && t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return r, fmt.Errorf("route %q: timeout %q: %v", r.Name, t, err)
		}
		r.Timeout = d
	}
	cond, _ := m["condition"].(map[string]any)
	if err := matchInto(cond, &r); err != nil {
		return r, fmt.Errorf("route %q: %v", r.Name, err)
	}
	classes, _ := m["responseClasses"].([]any)
	for _, c := range classes {
		cm, _ := c.(map[string]any)
		class := destination.ResponseClass{StatusMin: 100, StatusMax: 599}
		class.Failure, _ = cm["isFailure"].(bool)
		cc, _ := cm["condition"].(map[string]any)
		st, _ := cc["status"].(map[string]any)
		if v, ok := st["min"].(int64); ok {
			class.StatusMin = uint32(v)
		}
		if v, ok := st["max"].(int64); ok {
			class.StatusMax = uint32(v)
		}
		r.Classes = append(r.Classes, class)
	}
	return r, nil
}

// matchInto reads a request condition: method and pathRegex, at the top or
// under all (any and not are not supported yet).
func matchInto(cond map[string]any, r *destination.Route) error {
	for k, v := range cond {
		switch k {
		case "method":
			r.Method, _ = v.(string)
		case "pathRegex":
			r.PathRegex, _ = v.(string)
		case "all":
			list, _ := v.([]any)
			for _, item := range list {
				m, _ := item.(map[string]any)
				if err := matchInto(m, r); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("condition %q is not supported (method, pathRegex and all are)", k)
		}
	}
	return nil
}
