package cli

import (
	"context"
	"fmt"
	"io"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// writeExtensionUninstall prints, for kubectl delete -f -, an extension's
// namespace (when it exists) and its cluster-wide objects labelled sel
// (MutatingWebhookConfigurations, ClusterRoles, ClusterRoleBindings) as a
// List; it fails naming what it looked for when there is none.
func writeExtensionUninstall(ctx context.Context, c kubernetes.Interface, w io.Writer, extension, ns, sel string) error {
	var items []map[string]any
	if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		items = append(items, item("v1", "Namespace", ns))
	}
	opts := metav1.ListOptions{LabelSelector: sel}
	whs, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, opts)
	if err != nil {
		return fmt.Errorf("listing mutatingwebhookconfigurations: %w", err)
	}
	for _, o := range whs.Items {
		items = append(items, item("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", o.Name))
	}
	crs, err := c.RbacV1().ClusterRoles().List(ctx, opts)
	if err != nil {
		return fmt.Errorf("listing clusterroles: %w", err)
	}
	for _, o := range crs.Items {
		items = append(items, item("rbac.authorization.k8s.io/v1", "ClusterRole", o.Name))
	}
	crbs, err := c.RbacV1().ClusterRoleBindings().List(ctx, opts)
	if err != nil {
		return fmt.Errorf("listing clusterrolebindings: %w", err)
	}
	for _, o := range crbs.Items {
		items = append(items, item("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", o.Name))
	}
	if len(items) == 0 {
		return fmt.Errorf("no %s extension found (namespace %s, objects labelled %s)", extension, ns, sel)
	}
	b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
