package metricsapi

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/compat"
)

// Resource is one resource of a kind, with its running pods.
type Resource struct {
	Namespace, Name string
	// MeshedPods / TotalPods: running pods with a proxy / all running
	// pods; -1 when unknown or not applicable.
	MeshedPods, TotalPods int
}

// Lister lists the resources of a kind ("" namespace: all). A named
// resource that does not exist is an error (*NotFoundError, or
// *NotMeshedError when the lister only knows meshed resources).
type Lister interface {
	List(ctx context.Context, k Kind, namespace, name string) ([]Resource, error)
	// Authoritative tells whether resources the lister does not list
	// do not exist (Kubernetes) rather than are unknown to it.
	Authoritative() bool
}

// PromLister knows the resources whose proxies Prometheus scrapes, from
// proxy_build_info; it cannot count unmeshed pods (TotalPods is -1). It
// serves where the API has no Kubernetes access (proxies outside
// Kubernetes, tests).
type PromLister struct {
	Prom Querier
	Now  func() time.Time
}

// Authoritative is false: Prometheus only knows meshed pods.
func (l *PromLister) Authoritative() bool { return false }

// List implements Lister.
func (l *PromLister) List(ctx context.Context, k Kind, ns, name string) ([]Resource, error) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	if k == KindService {
		sel := selector{compat.LabelDirection: compat.Outbound}
		if ns != "" {
			sel["dst_namespace"] = ns
		}
		if name != "" {
			return []Resource{{Namespace: ns, Name: name, MeshedPods: -1, TotalPods: -1}}, nil
		}
		v, err := l.Prom.Query(ctx, fmt.Sprintf(`count(%s%s) by (dst_namespace, dst_service)`, compat.MetricRequestTotal, sel), now())
		if err != nil {
			return nil, err
		}
		var out []Resource
		for _, s := range v {
			if n := string(s.Metric["dst_service"]); n != "" {
				out = append(out, Resource{Namespace: string(s.Metric["dst_namespace"]), Name: n, MeshedPods: -1, TotalPods: -1})
			}
		}
		return out, nil
	}
	sel := selector{}
	addSelf(sel, k, ns, name)
	by := "namespace, " + k.label()
	if k == KindNamespace {
		by = "namespace"
	}
	v, err := l.Prom.Query(ctx, fmt.Sprintf(`count(count(%s%s) by (%s, pod)) by (%s)`, compat.MetricProxyBuildInfo, sel, by, by), now())
	if err != nil {
		return nil, err
	}
	var out []Resource
	for _, s := range v {
		r := Resource{Namespace: string(s.Metric["namespace"]), Name: string(s.Metric[model.LabelName(k.label())]), MeshedPods: int(s.Value), TotalPods: -1}
		if k == KindNamespace {
			r.Namespace = ""
		}
		if r.Name != "" {
			out = append(out, r)
		}
	}
	if name != "" && len(out) == 0 {
		return nil, &NotMeshedError{Kind: k, Namespace: ns, Name: name,
			Detail: "Prometheus has no metrics from a proxy of it (it does not exist, has no meshed pods, or its proxies are not scraped)"}
	}
	return out, nil
}

// KubeLister lists resources and their pods from the Kubernetes API.
type KubeLister struct {
	Client kubernetes.Interface
}

// Authoritative is true.
func (l *KubeLister) Authoritative() bool { return true }

// List implements Lister.
func (l *KubeLister) List(ctx context.Context, k Kind, ns, name string) ([]Resource, error) {
	type object struct {
		ns, name string
		sel      labels.Selector // nil: every pod of the namespace
	}
	var objs []object
	one := func(err error) error {
		if apierrors.IsNotFound(err) {
			return &NotFoundError{Kind: k, Namespace: ns, Name: name}
		}
		return fmt.Errorf("listing %ss: %w", k, err)
	}
	listOpts := metav1.ListOptions{}
	if name != "" {
		listOpts.FieldSelector = "metadata.name=" + name
	}
	addSel := func(ons, oname string, ls *metav1.LabelSelector) error {
		if name != "" && oname != name {
			return nil
		}
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return fmt.Errorf("%s %s/%s: selector: %w", k, ons, oname, err)
		}
		objs = append(objs, object{ons, oname, s})
		return nil
	}
	var err error
	switch k {
	case KindNamespace:
		var list *corev1.NamespaceList
		if list, err = l.Client.CoreV1().Namespaces().List(ctx, listOpts); err == nil {
			for _, o := range list.Items {
				if name != "" && o.Name != name {
					continue
				}
				objs = append(objs, object{o.Name, o.Name, nil})
			}
		}
	case KindDeployment:
		list, lerr := l.Client.AppsV1().Deployments(ns).List(ctx, listOpts)
		for i := 0; lerr == nil && i < len(list.Items); i++ {
			lerr = addSel(list.Items[i].Namespace, list.Items[i].Name, list.Items[i].Spec.Selector)
		}
		err = lerr
	case KindStatefulSet:
		list, lerr := l.Client.AppsV1().StatefulSets(ns).List(ctx, listOpts)
		for i := 0; lerr == nil && i < len(list.Items); i++ {
			lerr = addSel(list.Items[i].Namespace, list.Items[i].Name, list.Items[i].Spec.Selector)
		}
		err = lerr
	case KindDaemonSet:
		list, lerr := l.Client.AppsV1().DaemonSets(ns).List(ctx, listOpts)
		for i := 0; lerr == nil && i < len(list.Items); i++ {
			lerr = addSel(list.Items[i].Namespace, list.Items[i].Name, list.Items[i].Spec.Selector)
		}
		err = lerr
	case KindJob:
		list, lerr := l.Client.BatchV1().Jobs(ns).List(ctx, listOpts)
		for i := 0; lerr == nil && i < len(list.Items); i++ {
			lerr = addSel(list.Items[i].Namespace, list.Items[i].Name, list.Items[i].Spec.Selector)
		}
		err = lerr
	case KindPod:
		list, lerr := l.Client.CoreV1().Pods(ns).List(ctx, listOpts)
		var out []Resource
		for i := 0; lerr == nil && i < len(list.Items); i++ {
			p := &list.Items[i]
			if name != "" && p.Name != name {
				continue
			}
			m, t := countPods([]corev1.Pod{*p}, labels.Everything())
			out = append(out, Resource{Namespace: p.Namespace, Name: p.Name, MeshedPods: m, TotalPods: t})
		}
		if lerr != nil {
			return nil, one(lerr)
		}
		if name != "" && len(out) == 0 {
			return nil, &NotFoundError{Kind: k, Namespace: ns, Name: name}
		}
		return out, nil
	case KindService:
		list, lerr := l.Client.CoreV1().Services(ns).List(ctx, listOpts)
		var out []Resource
		for i := 0; lerr == nil && i < len(list.Items); i++ {
			if name != "" && list.Items[i].Name != name {
				continue
			}
			out = append(out, Resource{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name, MeshedPods: -1, TotalPods: -1})
		}
		if lerr != nil {
			return nil, one(lerr)
		}
		if name != "" && len(out) == 0 {
			return nil, &NotFoundError{Kind: k, Namespace: ns, Name: name}
		}
		return out, nil
	default:
		return nil, &UnknownKindError{Kind: string(k)}
	}
	if err != nil {
		return nil, one(err)
	}
	if name != "" && len(objs) == 0 {
		return nil, &NotFoundError{Kind: k, Namespace: ns, Name: name}
	}
	pods := map[string][]corev1.Pod{}
	out := make([]Resource, 0, len(objs))
	for _, o := range objs {
		if _, ok := pods[o.ns]; !ok {
			list, err := l.Client.CoreV1().Pods(o.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, fmt.Errorf("listing pods in %s: %w", o.ns, err)
			}
			pods[o.ns] = list.Items
		}
		sel := o.sel
		if sel == nil {
			sel = labels.Everything()
		}
		m, t := countPods(pods[o.ns], sel)
		r := Resource{Namespace: o.ns, Name: o.name, MeshedPods: m, TotalPods: t}
		if k == KindNamespace {
			r.Namespace = ""
		}
		out = append(out, r)
	}
	return out, nil
}

// countPods counts the running pods that sel matches, and those of them
// with the proxy container (a container, or a native sidecar).
func countPods(pods []corev1.Pod, sel labels.Selector) (meshed, total int) {
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		total++
		for _, c := range append(append([]corev1.Container{}, p.Spec.Containers...), p.Spec.InitContainers...) {
			if c.Name == compat.ProxyContainerName {
				meshed++
				break
			}
		}
	}
	return meshed, total
}
