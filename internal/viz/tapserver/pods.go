package tapserver

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// podsOf returns the running pods of a resource: those its selector
// matches (every pod of a namespace; the pod itself).
func podsOf(ctx context.Context, kube kubernetes.Interface, k metricsapi.Kind, ns, name string) ([]corev1.Pod, error) {
	notFound := func(err error) error {
		if apierrors.IsNotFound(err) {
			return &httpError{http.StatusNotFound, fmt.Sprintf("%s %s not found in namespace %q", k, name, ns)}
		}
		return fmt.Errorf("getting %s %s/%s: %w", k, ns, name, err)
	}
	var sel *metav1.LabelSelector
	switch k {
	case metricsapi.KindNamespace:
		if _, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &httpError{http.StatusNotFound, fmt.Sprintf("namespace %s not found", name)}
			}
			return nil, fmt.Errorf("getting namespace %s: %w", name, err)
		}
		ns, sel = name, &metav1.LabelSelector{}
	case metricsapi.KindPod:
		p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err)
		}
		return running([]corev1.Pod{*p}), nil
	case metricsapi.KindDeployment:
		o, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err)
		}
		sel = o.Spec.Selector
	case metricsapi.KindStatefulSet:
		o, err := kube.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err)
		}
		sel = o.Spec.Selector
	case metricsapi.KindDaemonSet:
		o, err := kube.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err)
		}
		sel = o.Spec.Selector
	case metricsapi.KindJob:
		o, err := kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err)
		}
		sel = o.Spec.Selector
	case metricsapi.KindService:
		o, err := kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, notFound(err)
		}
		if len(o.Spec.Selector) == 0 {
			return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("service %s/%s has no selector: its pods are unknown", ns, name)}
		}
		sel = &metav1.LabelSelector{MatchLabels: o.Spec.Selector}
	default:
		return nil, &httpError{http.StatusBadRequest, (&metricsapi.UnknownKindError{Kind: string(k)}).Error()}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: selector: %w", k, ns, name, err)
	}
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return nil, fmt.Errorf("listing pods of %s %s/%s: %w", k, ns, name, err)
	}
	return running(list.Items), nil
}

func running(pods []corev1.Pod) []corev1.Pod {
	out := pods[:0:0]
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// meshed reports whether the pod runs the proxy (a container or a native sidecar).
func meshed(p *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container(nil), p.Spec.Containers...), p.Spec.InitContainers...) {
		if c.Name == compat.ProxyContainerName {
			return true
		}
	}
	return false
}
