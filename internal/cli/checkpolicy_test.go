package cli

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func policyObj(gvr schema.GroupVersionResource, kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(gvr.GroupVersion().String())
	u.SetKind(kind)
	u.SetNamespace("shop")
	u.SetName(name)
	return u
}

func TestPolicyChecks(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"app": "web"}}}
	sel := func(app string) map[string]any { return map[string]any{"matchLabels": map[string]any{"app": app}} }
	objs := []runtime.Object{
		policyObj(serversGVR, "Server", "web-http", map[string]any{"podSelector": sel("web"), "port": int64(8080)}),
		policyObj(serversGVR, "Server", "typo", map[string]any{"podSelector": sel("wbe"), "port": int64(8080)}),
		policyObj(authzPolicyGVR, "AuthorizationPolicy", "ok", map[string]any{"targetRef": map[string]any{"kind": "Server", "name": "web-http"}}),
		policyObj(authzPolicyGVR, "AuthorizationPolicy", "orphan", map[string]any{"targetRef": map[string]any{"kind": "Server", "name": "ghost"}}),
		policyObj(authzPolicyGVR, "AuthorizationPolicy", "route", map[string]any{"targetRef": map[string]any{"kind": "HTTPRoute", "name": "x"}}),
		policyObj(serverAuthzGVR, "ServerAuthorization", "old-orphan", map[string]any{"server": map[string]any{"name": "gone"}}),
	}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		serversGVR: "ServerList", serverAuthzGVR: "ServerAuthorizationList", authzPolicyGVR: "AuthorizationPolicyList"}, objs...)
	k := &checker{c: fake.NewSimpleClientset(pod), d: dyn, ns: "linkerd"}
	ctx := context.Background()
	err := k.serversSelectPods(ctx)
	if err == nil || !strings.Contains(err.Error(), "shop/typo") || strings.Contains(err.Error(), "web-http") {
		t.Errorf("serversSelectPods: %v; want shop/typo reported, not web-http", err)
	}
	err = k.authorizationsHaveServers(ctx)
	for _, want := range []string{"AuthorizationPolicy shop/orphan → Server ghost", "ServerAuthorization shop/old-orphan → Server gone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("authorizationsHaveServers: %v; want %q", err, want)
		}
	}
	if err != nil && (strings.Contains(err.Error(), "shop/ok") || strings.Contains(err.Error(), "route")) {
		t.Errorf("authorizationsHaveServers reports valid ones: %v", err)
	}
}
