package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/kubeclient"
	"github.com/weftmesh/weft/internal/version"
)

// kubeFlags are the flags of commands that talk to a cluster.
type kubeFlags struct {
	kubeconfig string
	namespace  string
}

func (k *kubeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig path (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVarP(&k.namespace, "linkerd-namespace", "L", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
}

func (k *kubeFlags) clients() (kubernetes.Interface, dynamic.Interface, error) {
	return kubeclient.Clients(k.kubeconfig, 30*time.Second)
}

func newInstallCommand() *cobra.Command {
	var o install.Options
	var crds bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the control plane's manifests (with --crds, the CRDs') for kubectl apply",
		Long: `Renders the embedded weft-control-plane chart — the same templates helm installs —
with the namespace included. Without identity flags it generates a trust anchor and an issuer
(ECDSA P-256, one year); give all three files to use yours, or --identity-external-issuer
when cert-manager writes the issuer Secret (kubernetes.io/tls). Values as with helm: -f, --set,
--set-string, --set-file.`,
		Example: "  weft install --crds | kubectl apply -f -\n  weft install | kubectl apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Version = version.Version
			var out string
			var err error
			if crds {
				vals, verr := install.Overlay(map[string]any{}, o)
				if verr != nil {
					return verr
				}
				out, err = install.Render(install.CRDsChart, "weft-crds", o.Namespace, vals)
			} else {
				vals, verr := install.ControlPlaneValues(o)
				if verr != nil {
					return verr
				}
				out, err = install.Render(install.ControlPlaneChart, "weft-control-plane", o.Namespace, vals)
			}
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out)
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&crds, "crds", false, "print the CRDs (weft-crds) instead of the control plane")
	f.StringVarP(&o.Namespace, "linkerd-namespace", "L", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
	f.StringVar(&o.AnchorsFile, "identity-trust-anchors-file", "", "trust anchors (PEM)")
	f.StringVar(&o.IssuerCertFile, "identity-issuer-certificate-file", "", "issuer certificate (PEM)")
	f.StringVar(&o.IssuerKeyFile, "identity-issuer-key-file", "", "issuer key (PEM)")
	f.BoolVar(&o.ExternalIssuer, "identity-external-issuer", false, "the issuer Secret (kubernetes.io/tls) is written by someone else, e.g. cert-manager")
	f.StringArrayVarP(&o.ValuesFiles, "values", "f", nil, "values file (repeatable)")
	f.StringArrayVar(&o.Sets, "set", nil, "set a value, key=value (repeatable)")
	f.StringArrayVar(&o.SetStrings, "set-string", nil, "set a string value, key=value (repeatable)")
	f.StringArrayVar(&o.SetFiles, "set-file", nil, "set a value from a file, key=path (repeatable)")
	return cmd
}

func newUpgradeCommand() *cobra.Command {
	var k kubeFlags
	var o install.Options
	var crds bool
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Print the control plane's manifests for this version, keeping the installed values",
		Long: `Reads the installed values (linkerd-config), the issuer (linkerd-identity-issuer, for the
linkerd.io/tls scheme) and the injector's serving certificate from the cluster, lays the
flags over them, sets linkerdVersion to this CLI's version, and prints the control plane's
manifests for kubectl apply. Trust anchors, issuer and webhook certificate are kept. With
--crds it prints the CRDs, as install --crds does.`,
		Example: "  weft upgrade --crds | kubectl apply -f -\n  weft upgrade | kubectl apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Version, o.Namespace = version.Version, k.namespace
			if crds {
				vals, err := install.Overlay(map[string]any{}, o)
				if err != nil {
					return err
				}
				out, err := install.Render(install.CRDsChart, "weft-crds", o.Namespace, vals)
				if err != nil {
					return err
				}
				_, err = io.WriteString(cmd.OutOrStdout(), out)
				return err
			}
			c, _, err := k.clients()
			if err != nil {
				return err
			}
			vals, err := installedValues(cmd.Context(), c, k.namespace)
			if err != nil {
				return err
			}
			vals[compat.ValuesVersionKey] = version.Version
			if vals, err = install.Overlay(vals, o); err != nil {
				return err
			}
			out, err := install.Render(install.ControlPlaneChart, "weft-control-plane", k.namespace, vals)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out)
			return err
		},
	}
	k.add(cmd)
	f := cmd.Flags()
	f.BoolVar(&crds, "crds", false, "print the CRDs (weft-crds) instead of the control plane")
	f.StringArrayVarP(&o.ValuesFiles, "values", "f", nil, "values file (repeatable)")
	f.StringArrayVar(&o.Sets, "set", nil, "set a value, key=value (repeatable)")
	f.StringArrayVar(&o.SetStrings, "set-string", nil, "set a string value, key=value (repeatable)")
	f.StringArrayVar(&o.SetFiles, "set-file", nil, "set a value from a file, key=path (repeatable)")
	return cmd
}

// installedValues reads what an upgrade keeps: linkerd-config's values, the
// issuer key (not stored in linkerd-config) and the webhook certificate.
func installedValues(ctx context.Context, c kubernetes.Interface, ns string) (map[string]any, error) {
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, compat.ConfigConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the installed values: %w (is the control plane installed in %s?)", err, ns)
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(cm.Data["values"]), &vals); err != nil {
		return nil, fmt.Errorf("linkerd-config: %w", err)
	}
	identity, _ := vals["identity"].(map[string]any)
	issuer, _ := identity["issuer"].(map[string]any)
	if scheme, _ := issuer["scheme"].(string); scheme == compat.IssuerSchemeLinkerd {
		s, err := c.CoreV1().Secrets(ns).Get(ctx, compat.IssuerSecret, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the issuer: %w", err)
		}
		issuer["tls"] = map[string]any{"crtPEM": string(s.Data["crt.pem"]), "keyPEM": string(s.Data["key.pem"])}
	}
	if s, err := c.CoreV1().Secrets(ns).Get(ctx, compat.InjectorTLSSecret, metav1.GetOptions{}); err == nil && len(s.Data["ca.crt"]) > 0 {
		pi, _ := vals["proxyInjector"].(map[string]any)
		if pi == nil {
			pi = map[string]any{}
			vals["proxyInjector"] = pi
		}
		pi["existingTLS"] = map[string]any{"crtPEM": string(s.Data["tls.crt"]), "keyPEM": string(s.Data["tls.key"]), "caPEM": string(s.Data["ca.crt"])}
	}
	return vals, nil
}

// clusterScoped are the kinds weft uninstall looks for besides the namespace.
var clusterScoped = []schema.GroupVersionResource{
	{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
}

func newUninstallCommand() *cobra.Command {
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Print the control plane's resources, for kubectl delete",
		Long: `Lists what the control plane installed — its namespace and the cluster-wide webhook
configuration, roles, bindings and CRDs labelled linkerd.io/control-plane-ns — as a List for
kubectl delete -f -. Gateway API CRDs are left alone (other tools use them). Remove the
data plane first: weft uninject your workloads, or delete their pods after removing the
linkerd.io/inject annotations.`,
		Example: "  weft uninstall | kubectl delete -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, d, err := k.clients()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var items []map[string]any
			if _, err := c.CoreV1().Namespaces().Get(ctx, k.namespace, metav1.GetOptions{}); err == nil {
				items = append(items, item("v1", "Namespace", k.namespace))
			}
			sel := compat.LabelControlPlaneNS + "=" + k.namespace
			for _, gvr := range clusterScoped {
				list, err := d.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: sel})
				if err != nil {
					return fmt.Errorf("listing %s: %w", gvr.Resource, err)
				}
				for _, obj := range list.Items {
					items = append(items, item(obj.GetAPIVersion(), obj.GetKind(), obj.GetName()))
				}
			}
			if len(items) == 0 {
				return fmt.Errorf("no control plane found in namespace %s", k.namespace)
			}
			b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	k.add(cmd)
	return cmd
}

func item(apiVersion, kind, name string) map[string]any {
	return map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": name}}
}

// serverVersion reads linkerdVersion from linkerd-config.
func serverVersion(ctx context.Context, c kubernetes.Interface, ns string) (string, error) {
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, compat.ConfigConfigMap, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	var v struct {
		LinkerdVersion string `json:"linkerdVersion"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["values"]), &v); err != nil {
		return "", fmt.Errorf("linkerd-config: %w", err)
	}
	return v.LinkerdVersion, nil
}
