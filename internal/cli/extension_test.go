package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestWriteExtensionUninstall(t *testing.T) {
	labels := map[string]string{"linkerd.io/extension": "jaeger"}
	c := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-jaeger"}},
		&admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-jaeger-injector-webhook-config", Labels: labels}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-jaeger-injector", Labels: labels}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "linkerd-jaeger-injector", Labels: labels}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}},
	)
	var out bytes.Buffer
	if err := writeExtensionUninstall(context.Background(), c, &out, "jaeger", "linkerd-jaeger", "linkerd.io/extension=jaeger"); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"kind: List", "kind: Namespace\n  metadata:\n    name: linkerd-jaeger", "kind: MutatingWebhookConfiguration",
		"kind: ClusterRole\n  metadata:\n    name: linkerd-jaeger-injector", "kind: ClusterRoleBinding"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "someone-else") {
		t.Errorf("lists an object not labelled for the extension:\n%s", got)
	}

	err := writeExtensionUninstall(context.Background(), fake.NewClientset(), &out, "viz", "linkerd-viz", "linkerd.io/extension=viz")
	if err == nil || err.Error() != "no viz extension found (namespace linkerd-viz, objects labelled linkerd.io/extension=viz)" {
		t.Errorf("nothing installed: %v", err)
	}
}
