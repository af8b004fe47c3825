package metricsapi

import (
	"context"
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseResource(t *testing.T) {
	for _, tc := range []struct {
		in, name string
		kind     Kind
		err      bool
	}{
		{"deploy/web", "web", KindDeployment, false},
		{"Deployments", "", KindDeployment, false},
		{"sts/db", "db", KindStatefulSet, false},
		{"ds", "", KindDaemonSet, false},
		{"jobs/x", "x", KindJob, false},
		{"po/web-0", "web-0", KindPod, false},
		{"svc/api", "api", KindService, false},
		{"ns/shop", "shop", KindNamespace, false},
		{"replicaset/x", "", "", true},
		{"", "", "", true},
	} {
		k, n, err := ParseResource(tc.in)
		if (err != nil) != tc.err || k != tc.kind || n != tc.name {
			t.Errorf("ParseResource(%q) = %q, %q, %v; want %q, %q, err %v", tc.in, k, n, err, tc.kind, tc.name, tc.err)
		}
		var uk *UnknownKindError
		if tc.err && !errors.As(err, &uk) {
			t.Errorf("ParseResource(%q) error %T, want *UnknownKindError", tc.in, err)
		}
	}
}

func TestPlanStat(t *testing.T) {
	for _, tc := range []struct {
		name     string
		req      StatRequest
		sel      string
		by       string
		badInput bool
	}{
		{"deployments of a namespace", StatRequest{Kind: KindDeployment, Namespace: "shop"},
			`{direction="inbound", namespace="shop"}`, "namespace, deployment", false},
		{"one job", StatRequest{Kind: KindJob, Namespace: "shop", Name: "backup"},
			`{direction="inbound", k8s_job="backup", namespace="shop"}`, "namespace, k8s_job", false},
		{"all namespaces", StatRequest{Kind: KindPod, Namespace: "shop", AllNamespaces: true},
			`{direction="inbound"}`, "namespace, pod", false},
		{"one namespace", StatRequest{Kind: KindNamespace, Name: "shop"},
			`{direction="inbound", namespace="shop"}`, "namespace", false},
		{"services", StatRequest{Kind: KindService, Namespace: "shop", Name: "api"},
			`{direction="outbound", dst_namespace="shop", dst_service="api"}`, "dst_namespace, dst_service", false},
		{"to", StatRequest{Kind: KindDeployment, Namespace: "shop", Name: "web", ToKind: "svc", ToName: "api", ToNamespace: "backend"},
			`{deployment="web", direction="outbound", dst_namespace="backend", dst_service="api", namespace="shop"}`, "namespace, deployment", false},
		{"from", StatRequest{Kind: KindStatefulSet, Namespace: "shop", FromKind: "deploy", FromName: "web"},
			`{deployment="web", direction="outbound", dst_namespace="shop", namespace="shop"}`, "dst_namespace, dst_statefulset", false},
		{"from and to", StatRequest{Kind: KindDeployment, Namespace: "shop", FromKind: "deploy", FromName: "a", ToKind: "deploy", ToName: "b"}, "", "", true},
		{"from a service", StatRequest{Kind: KindDeployment, Namespace: "shop", FromKind: "svc", FromName: "a"}, "", "", true},
		{"service to", StatRequest{Kind: KindService, Namespace: "shop", ToKind: "deploy", ToName: "b"}, "", "", true},
		{"no namespace", StatRequest{Kind: KindDeployment}, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planStat(&tc.req)
			if tc.badInput {
				var br *BadRequestError
				if !errors.As(err, &br) {
					t.Fatalf("err = %v, want a bad request", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.sel.String(); got != tc.sel {
				t.Errorf("selector = %s, want %s", got, tc.sel)
			}
			if got := p.by(); got != tc.by {
				t.Errorf("by = %s, want %s", got, tc.by)
			}
		})
	}
}

func pod(ns, name string, labels map[string]string, phase corev1.PodPhase, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Status: corev1.PodStatus{Phase: phase}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

func deployment(ns, name string, match map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: match}}}
}

func TestKubeListerCountsMeshedPods(t *testing.T) {
	c := fake.NewSimpleClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		deployment("shop", "web", map[string]string{"app": "web"}),
		deployment("shop", "legacy", map[string]string{"app": "legacy"}),
		pod("shop", "web-1", map[string]string{"app": "web"}, corev1.PodRunning, "web", "linkerd-proxy"),
		pod("shop", "web-2", map[string]string{"app": "web"}, corev1.PodRunning, "web"),
		pod("shop", "web-3", map[string]string{"app": "web"}, corev1.PodPending, "web", "linkerd-proxy"),
		pod("shop", "legacy-1", map[string]string{"app": "legacy"}, corev1.PodRunning, "legacy"),
	)
	l := &KubeLister{Client: c}
	ctx := context.Background()
	got, err := l.List(ctx, KindDeployment, "shop", "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{"web": {1, 2}, "legacy": {0, 1}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %v", got, want)
	}
	for _, r := range got {
		if w := want[r.Name]; r.MeshedPods != w[0] || r.TotalPods != w[1] {
			t.Errorf("%s: %d/%d, want %d/%d", r.Name, r.MeshedPods, r.TotalPods, w[0], w[1])
		}
	}
	ns, err := l.List(ctx, KindNamespace, "", "shop")
	if err != nil || len(ns) != 1 || ns[0].MeshedPods != 1 || ns[0].TotalPods != 3 {
		t.Errorf("namespace shop: %+v, %v; want 1/3", ns, err)
	}
	var nf *NotFoundError
	if _, err := l.List(ctx, KindDeployment, "shop", "nope"); !errors.As(err, &nf) {
		t.Errorf("missing deployment: %v, want not found", err)
	}
	// A stat of the unmeshed deployment names the problem.
	rows := []Resource{{Namespace: "shop", Name: "legacy", MeshedPods: 0, TotalPods: 1}}
	err = namedResourceProblem(StatRequest{Kind: KindDeployment, Namespace: "shop", Name: "legacy"}, rows)
	if want := `deployment/legacy in namespace "shop" is not meshed: none of its 1 running pods has a linkerd-proxy container`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestMatchClient(t *testing.T) {
	ids := []string{"web.shop.serviceaccount.identity.linkerd.cluster.local", "default.shop.serviceaccount.identity.linkerd.cluster.local",
		"vote.bots.serviceaccount.identity.linkerd.cluster.local"}
	for _, tc := range []struct {
		src  Endpoint
		want string
	}{
		{Endpoint{Namespace: "shop", Kind: KindDeployment, Name: "web"}, ids[0]},
		{Endpoint{Namespace: "bots", Kind: KindDeployment, Name: "voter"}, ids[2]},
		{Endpoint{Namespace: "shop", Kind: KindDeployment, Name: "other"}, ""}, // two candidates
		{Endpoint{Namespace: "none", Kind: KindDeployment, Name: "web"}, ""},
	} {
		if got := matchClient(tc.src, ids); got != tc.want {
			t.Errorf("matchClient(%v) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

func TestPodTargets(t *testing.T) {
	yes := true
	p := pod("shop", "web-0", map[string]string{"app": "web", "linkerd.io/proxy-deployment": "web"}, corev1.PodRunning, "web")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	p.Spec.InitContainers = []corev1.Container{{Name: "linkerd-proxy", Image: "proxy:1", Ports: []corev1.ContainerPort{{Name: "linkerd-admin", ContainerPort: 4191, Protocol: corev1.ProtocolTCP}}}}
	p.Status.PodIP = "198.18.0.7"
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d9f", Controller: &yes}}
	pending := pod("shop", "web-1", nil, corev1.PodPending, "web")
	pending.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	got, err := PodTargets(context.Background(), fake.NewSimpleClientset(p, pending))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d target groups, want the running pod's 2 ports: %+v", len(got), got)
	}
	byPort := map[string]TargetGroup{}
	for _, g := range got {
		byPort[g.Labels["__meta_kubernetes_pod_container_port_name"]] = g
	}
	admin := byPort["linkerd-admin"]
	for k, want := range map[string]string{
		"__meta_kubernetes_namespace":                             "shop",
		"__meta_kubernetes_pod_name":                              "web-0",
		"__meta_kubernetes_pod_container_name":                    "linkerd-proxy",
		"__meta_kubernetes_pod_container_init":                    "true",
		"__meta_kubernetes_pod_container_port_number":             "4191",
		"__meta_kubernetes_pod_ready":                             "true",
		"__meta_kubernetes_pod_controller_kind":                   "ReplicaSet",
		"__meta_kubernetes_pod_label_linkerd_io_proxy_deployment": "web",
		"__meta_kubernetes_pod_labelpresent_app":                  "true",
	} {
		if admin.Labels[k] != want {
			t.Errorf("%s = %q, want %q", k, admin.Labels[k], want)
		}
	}
	if len(admin.Targets) != 1 || admin.Targets[0] != "198.18.0.7:4191" {
		t.Errorf("targets %v, want 198.18.0.7:4191", admin.Targets)
	}
	if byPort["http"].Labels["__meta_kubernetes_pod_container_init"] != "false" {
		t.Errorf("app container: %v", byPort["http"].Labels)
	}
}
