package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weftmesh/weft/internal/compat"
)

// The policy resources `weft check` looks at (Linkerd's storage versions).
var (
	serversGVR     = schema.GroupVersionResource{Group: compat.PolicyGroup, Version: "v1beta3", Resource: "servers"}
	serverAuthzGVR = schema.GroupVersionResource{Group: compat.PolicyGroup, Version: "v1beta1", Resource: "serverauthorizations"}
	authzPolicyGVR = schema.GroupVersionResource{Group: compat.PolicyGroup, Version: "v1alpha1", Resource: "authorizationpolicies"}
)

func (k *checker) policyGroup() checkGroup {
	return checkGroup{compat.CheckPolicy, []check{
		{desc: "Servers select pods", warn: true, hint: "a Server that selects no pod protects nothing: check its podSelector (kubectl get pods -l ...)", run: k.serversSelectPods},
		{desc: "authorizations reference existing Servers", hint: "an authorization for a missing Server authorizes nothing: fix its targetRef / server.name", run: k.authorizationsHaveServers},
	}}
}

func (k *checker) list(ctx context.Context, gvr schema.GroupVersionResource) ([]unstructured.Unstructured, error) {
	l, err := k.d.Resource(gvr).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil // no CRD: nothing to check (the CRD check reports it)
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", gvr.Resource, err)
	}
	return l.Items, nil
}

func (k *checker) serversSelectPods(ctx context.Context) error {
	servers, err := k.list(ctx, serversGVR)
	if err != nil {
		return err
	}
	var idle []string
	for _, s := range servers {
		sel, ok, _ := unstructured.NestedMap(s.Object, "spec", "podSelector")
		if !ok {
			idle = append(idle, s.GetNamespace()+"/"+s.GetName()+" (no podSelector)")
			continue
		}
		var ls metav1.LabelSelector
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(sel, &ls); err != nil {
			idle = append(idle, s.GetNamespace()+"/"+s.GetName()+" (invalid podSelector)")
			continue
		}
		selector, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			idle = append(idle, s.GetNamespace()+"/"+s.GetName()+" (invalid podSelector)")
			continue
		}
		pods, err := k.c.CoreV1().Pods(s.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: selector.String(), Limit: 1})
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 {
			idle = append(idle, s.GetNamespace()+"/"+s.GetName())
		}
	}
	if len(idle) > 0 {
		sort.Strings(idle)
		return fmt.Errorf("Servers selecting no pods: %s", strings.Join(idle, ", "))
	}
	return nil
}

func (k *checker) authorizationsHaveServers(ctx context.Context) error {
	servers, err := k.list(ctx, serversGVR)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, s := range servers {
		exists[s.GetNamespace()+"/"+s.GetName()] = true
	}
	var bad []string
	aps, err := k.list(ctx, authzPolicyGVR)
	if err != nil {
		return err
	}
	for _, ap := range aps {
		kind, _, _ := unstructured.NestedString(ap.Object, "spec", "targetRef", "kind")
		name, _, _ := unstructured.NestedString(ap.Object, "spec", "targetRef", "name")
		if strings.EqualFold(kind, "Server") && !exists[ap.GetNamespace()+"/"+name] {
			bad = append(bad, fmt.Sprintf("AuthorizationPolicy %s/%s → Server %s", ap.GetNamespace(), ap.GetName(), name))
		}
	}
	sas, err := k.list(ctx, serverAuthzGVR)
	if err != nil {
		return err
	}
	for _, sa := range sas {
		name, _, _ := unstructured.NestedString(sa.Object, "spec", "server", "name")
		if name != "" && !exists[sa.GetNamespace()+"/"+name] {
			bad = append(bad, fmt.Sprintf("ServerAuthorization %s/%s → Server %s", sa.GetNamespace(), sa.GetName(), name))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("missing Servers: %s", strings.Join(bad, "; "))
	}
	return nil
}
