package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/version"
)

func newJaegerCommand() *cobra.Command {
	v := vizFlags{}
	cmd := &cobra.Command{
		Use:   "jaeger",
		Short: "The jaeger extension: the injector that turns tracing on in proxies, and Jaeger",
		Long: `Commands of the jaeger extension (linkerd-jaeger's names). Its chart, weft-jaeger, runs the
jaeger-injector webhook that gives proxies the trace collector's address, identity and
protocol, and with jaeger.enabled a Jaeger (all-in-one, in memory) with its UI (docs/tracing.md).`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&v.kubeconfig, "kubeconfig", "", "kubeconfig path (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&v.kubeContext, "context", "", "kubeconfig context")
	f.StringVar(&v.vizNamespace, "jaeger-namespace", compat.JaegerNamespace, "the jaeger extension's namespace")
	cmd.AddCommand(newJaegerInstallCommand(), newJaegerUninstallCommand(&v), newJaegerCheckCommand(&v), newJaegerDashboardCommand(&v))
	return cmd
}

func newJaegerInstallCommand() *cobra.Command {
	var o install.Options
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the jaeger extension's manifests for kubectl apply",
		Long: `Renders the embedded weft-jaeger chart — the same templates helm installs. Values as with
helm (linkerd-jaeger's names: webhook.collectorSvcAddr, webhook.collectorSvcAccount,
webhook.collectorTraceProtocol, webhook.collectorTraceSvcName, webhook.namespaceSelector,
collector.enabled, jaeger.enabled): -f, --set, --set-string, --set-file.`,
		Example: "  weft jaeger install --set webhook.collectorSvcAddr=tempo-distributor.tracing:55678 \\\n" +
			"    --set webhook.collectorSvcAccount=tempo --set webhook.collectorTraceProtocol=opencensus | kubectl apply -f -",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vals, err := install.Overlay(map[string]any{"installNamespace": true, compat.ValuesVersionKey: version.Version}, o)
			if err != nil {
				return err
			}
			out, err := install.Render(install.JaegerChart, "weft-jaeger", o.Namespace, vals)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Namespace, "jaeger-namespace", compat.JaegerNamespace, "the jaeger extension's namespace")
	f.StringArrayVarP(&o.ValuesFiles, "values", "f", nil, "values file (repeatable)")
	f.StringArrayVar(&o.Sets, "set", nil, "set a value, key=value (repeatable)")
	f.StringArrayVar(&o.SetStrings, "set-string", nil, "set a string value, key=value (repeatable)")
	f.StringArrayVar(&o.SetFiles, "set-file", nil, "set a value from a file, key=path (repeatable)")
	return cmd
}

func newJaegerUninstallCommand(v *vizFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "uninstall",
		Short:   "Print the jaeger extension's resources, for kubectl delete",
		Example: "  weft jaeger uninstall | kubectl delete -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := v.kubeClient()
			if err != nil {
				return err
			}
			return writeExtensionUninstall(cmd.Context(), c, cmd.OutOrStdout(), "jaeger", v.vizNamespace, compat.JaegerSelector)
		},
	}
}

func newJaegerCheckCommand(v *vizFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the jaeger extension: its injector and its webhook",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			deployments := func(ctx context.Context) error {
				_, c, err := v.kubeClient()
				if err != nil {
					return err
				}
				list, err := c.AppsV1().Deployments(v.vizNamespace).List(ctx, metav1.ListOptions{LabelSelector: compat.JaegerSelector})
				if err != nil {
					return fmt.Errorf("listing Deployments in %s: %w", v.vizNamespace, err)
				}
				if len(list.Items) == 0 {
					return fmt.Errorf("no jaeger Deployments in namespace %s", v.vizNamespace)
				}
				for _, d := range list.Items {
					if !deploymentAvailable(&d) {
						return fmt.Errorf("%s not available (%d/%d ready)", d.Name, d.Status.ReadyReplicas, d.Status.Replicas)
					}
				}
				return nil
			}
			webhook := func(ctx context.Context) error {
				_, c, err := v.kubeClient()
				if err != nil {
					return err
				}
				_, err = c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, compat.JaegerWebhookConfig, metav1.GetOptions{})
				return err
			}
			g := checkGroup{name: compat.CheckJaeger, checks: []check{
				{desc: "the jaeger injector is available", hint: "kubectl get pods -n " + v.vizNamespace + "; install with weft jaeger install | kubectl apply -f -", run: deployments},
				{desc: "the jaeger injector's webhook is registered", hint: "weft jaeger install | kubectl apply -f -", run: webhook},
			}}
			if !runChecks(ctx, cmd.OutOrStdout(), []checkGroup{g}) {
				return errors.New("jaeger checks failed")
			}
			return nil
		},
	}
}
