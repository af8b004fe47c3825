package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/install"
	"github.com/weftmesh/weft/internal/version"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// Viz defaults, as Linkerd viz's.
const (
	vizDefaultNamespace = compat.VizNamespace
	vizMetricsAPIName   = "metrics-api"
	vizMetricsAPIPort   = 8085
)

// vizFlags reach the metrics API: directly (--metrics-api-addr) or through
// the Kubernetes API server's service proxy.
type vizFlags struct {
	kubeconfig, kubeContext string
	vizNamespace            string
	metricsAPIAddr          string
}

func (v *vizFlags) add(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&v.kubeconfig, "kubeconfig", "", "kubeconfig path (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&v.kubeContext, "context", "", "kubeconfig context")
	f.StringVar(&v.vizNamespace, "viz-namespace", vizDefaultNamespace, "the viz extension's namespace")
	f.StringVar(&v.metricsAPIAddr, "metrics-api-addr", "", "the metrics API's address (host:port or URL), instead of reaching it through the Kubernetes API")
}

func (v *vizFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = v.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: v.kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// kubeClient returns the REST config of the flags' kubeconfig and context
// and a client built from it.
func (v *vizFlags) kubeClient() (*rest.Config, kubernetes.Interface, error) {
	cfg, err := v.restConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cfg, c, nil
}

// client returns the metrics API client.
func (v *vizFlags) client() (*metricsapi.Client, error) {
	if v.metricsAPIAddr != "" {
		base := v.metricsAPIAddr
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		return &metricsapi.Client{Base: strings.TrimSuffix(base, "/")}, nil
	}
	cfg, err := v.restConfig()
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &metricsapi.Client{
		Base: fmt.Sprintf("%s/api/v1/namespaces/%s/services/%s:%d/proxy", strings.TrimSuffix(cfg.Host, "/"), v.vizNamespace, vizMetricsAPIName, vizMetricsAPIPort),
		HTTP: hc,
	}, nil
}

func newVizCommand() *cobra.Command {
	var v vizFlags
	cmd := &cobra.Command{
		Use:   "viz",
		Short: "The viz extension: golden metrics, edges, the dashboard's install",
		Long: `Commands of the viz extension (Linkerd viz's names and columns). stat and edges ask the
metrics API (weft-controller metrics-api), through the Kubernetes API server's service proxy
to metrics-api.linkerd-viz:8085, or directly with --metrics-api-addr.`,
	}
	v.add(cmd)
	cmd.AddCommand(newVizStatCommand(&v), newVizEdgesCommand(&v), newVizTapCommand(&v), newVizTopCommand(&v), newVizInstallCommand(), newVizUninstallCommand(&v), newVizCheckCommand(&v),
		newVizRoutesCommand(&v), newVizAuthzCommand(&v), newVizDashboardCommand(&v))
	return cmd
}

func newVizStatCommand(v *vizFlags) *cobra.Command {
	var (
		namespace, output, from, to, fromNS, toNS, window string
		all                                               bool
	)
	cmd := &cobra.Command{
		Use:   "stat (RESOURCE[/NAME] | RESOURCE NAME)",
		Short: "Golden metrics of resources: success rate, requests per second, latency, TCP connections",
		Long: `Shows, per resource, its meshed/running pods and, over the time window, the success rate,
requests per second and p50/p95/p99 latency of the requests it served (for services: that
meshed clients sent to it), and its open TCP connections. RESOURCE is namespace (ns),
deployment (deploy), statefulset (sts), daemonset (ds), job, pod (po) or service (svc).
--to restricts to the traffic the resources send to one resource, --from to the traffic one
resource sends to them.`,
		Example: "  weft viz stat deploy -n emojivoto\n  weft viz stat deploy/web --to svc/api -n shop\n  weft viz stat ns",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := resourceArgs(args)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			req := metricsapi.StatRequest{Kind: kind, Namespace: namespace, Name: name, AllNamespaces: all}
			if kind == metricsapi.KindNamespace {
				req.Namespace = ""
			}
			if req.Window, err = time.ParseDuration(window); err != nil {
				return fmt.Errorf("--time-window %q: %w", window, err)
			}
			for _, x := range []struct {
				flag, val, ns string
				kind, name    *string
				nsOut         *string
			}{{"--from", from, fromNS, &req.FromKind, &req.FromName, &req.FromNamespace}, {"--to", to, toNS, &req.ToKind, &req.ToName, &req.ToNamespace}} {
				if x.val == "" {
					continue
				}
				k, n, err := metricsapi.ParseResource(x.val)
				if err != nil {
					return fmt.Errorf("%s: %w", x.flag, err)
				}
				if n == "" {
					return fmt.Errorf("%s %s: give a resource name (kind/name)", x.flag, x.val)
				}
				*x.kind, *x.name, *x.nsOut = string(k), n, x.ns
			}
			c, err := v.client()
			if err != nil {
				return err
			}
			resp, err := c.Stat(cmd.Context(), req)
			if err != nil {
				return err
			}
			return writeStat(cmd.OutOrStdout(), resp, req, output)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace of the resources")
	f.BoolVarP(&all, "all-namespaces", "A", false, "resources of every namespace")
	f.StringVarP(&output, "output", "o", "table", "table, wide or json")
	f.StringVarP(&window, "time-window", "t", "1m", "the metrics' time window")
	f.StringVar(&from, "from", "", "only traffic from this resource (kind/name)")
	f.StringVar(&to, "to", "", "only traffic to this resource (kind/name)")
	f.StringVar(&fromNS, "from-namespace", "", "the --from resource's namespace (default: --namespace)")
	f.StringVar(&toNS, "to-namespace", "", "the --to resource's namespace (default: --namespace)")
	return cmd
}

func newVizEdgesCommand(v *vizFlags) *cobra.Command {
	var (
		namespace, output, window string
		all                       bool
	)
	cmd := &cobra.Command{
		Use:   "edges RESOURCE",
		Short: "Connections between resources, and whether Weft's mTLS secures them",
		Long: `Lists who talks to whom among resources of a kind (deployment, statefulset, daemonset,
job, pod, namespace) over the time window, whether the traffic is mTLS, and with -o wide the
client identity the destination's proxy saw and the server identity the source's proxy
verified.`,
		Example: "  weft viz edges deploy -n emojivoto\n  weft viz edges po -A -o wide",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := metricsapi.ParseKind(args[0])
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			req := metricsapi.EdgeRequest{Kind: kind, Namespace: namespace, AllNamespaces: all}
			if req.Window, err = time.ParseDuration(window); err != nil {
				return fmt.Errorf("--time-window %q: %w", window, err)
			}
			c, err := v.client()
			if err != nil {
				return err
			}
			resp, err := c.Edges(cmd.Context(), req)
			if err != nil {
				return err
			}
			return writeEdges(cmd.OutOrStdout(), resp, output)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace of the resources")
	f.BoolVarP(&all, "all-namespaces", "A", false, "edges of every namespace")
	f.StringVarP(&output, "output", "o", "table", "table, wide or json")
	f.StringVarP(&window, "time-window", "t", "1m", "the time window")
	return cmd
}

func newVizInstallCommand() *cobra.Command {
	var o install.Options
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the viz extension's manifests for kubectl apply",
		Long: `Renders the embedded weft-viz chart — the same templates helm installs — with its
namespace. Values as with helm (Linkerd viz's names: prometheusUrl, prometheus.enabled,
grafana.url, grafana.externalUrl, dashboard.enforcedHostRegexp, jaegerUrl, ...): -f, --set,
--set-string, --set-file.`,
		Example: "  weft viz install | kubectl apply -f -\n  weft viz install --set prometheus.enabled=false --set prometheusUrl=http://prometheus.monitoring:9090 | kubectl apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vals, err := install.Overlay(map[string]any{"installNamespace": true, compat.ValuesVersionKey: version.Version}, o)
			if err != nil {
				return err
			}
			out, err := install.Render(install.VizChart, "weft-viz", o.Namespace, vals)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Namespace, "viz-namespace", vizDefaultNamespace, "the viz extension's namespace")
	f.StringArrayVarP(&o.ValuesFiles, "values", "f", nil, "values file (repeatable)")
	f.StringArrayVar(&o.Sets, "set", nil, "set a value, key=value (repeatable)")
	f.StringArrayVar(&o.SetStrings, "set-string", nil, "set a string value, key=value (repeatable)")
	f.StringArrayVar(&o.SetFiles, "set-file", nil, "set a value from a file, key=path (repeatable)")
	return cmd
}

func newVizUninstallCommand(v *vizFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "uninstall",
		Short: "Print the viz extension's resources, for kubectl delete",
		Long: `Lists the viz extension's namespace and its cluster-wide objects (labelled
linkerd.io/extension=viz) as a List for kubectl delete -f -.`,
		Example: "  weft viz uninstall | kubectl delete -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, c, err := v.kubeClient()
			if err != nil {
				return err
			}
			return writeExtensionUninstall(cmd.Context(), c, cmd.OutOrStdout(), "viz", v.vizNamespace, compat.VizSelector)
		},
	}
}

func newVizCheckCommand(v *vizFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the viz extension: its pods, the metrics API and its Prometheus",
		Long: `Checks that the viz extension's Deployments are available (skipped with
--metrics-api-addr), that the metrics API answers, and that it can query Prometheus. Exits
non-zero if a check fails. weft check runs the same checks when the viz namespace exists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			if !runChecks(ctx, cmd.OutOrStdout(), []checkGroup{v.checkGroup()}) {
				return errors.New("viz checks failed")
			}
			return nil
		},
	}
}

// checkGroup is the viz extension's checks (weft viz check, weft check).
func (v *vizFlags) checkGroup() checkGroup {
	var checks []check
	if v.metricsAPIAddr == "" {
		checks = append(checks, check{desc: "the viz extension's Deployments are available",
			hint: "kubectl get pods -n " + v.vizNamespace + "; install with weft viz install | kubectl apply -f -",
			run:  v.checkDeployments})
	}
	var answered bool
	checks = append(checks,
		check{desc: "the metrics API answers", hint: "is the metrics-api Deployment ready? (or give --metrics-api-addr)",
			run: func(ctx context.Context) error {
				c, err := v.client()
				if err == nil {
					_, err = c.Version(ctx)
				}
				answered = err == nil
				return err
			}},
		check{desc: "the metrics API can query Prometheus", hint: "with prometheus.enabled=false, is prometheusUrl right and reachable from the metrics API?",
			run: func(ctx context.Context) error {
				if !answered {
					return errors.New("skipped: the metrics API does not answer")
				}
				c, err := v.client()
				if err != nil {
					return err
				}
				_, err = c.Stat(ctx, metricsapi.StatRequest{Kind: metricsapi.KindNamespace, Window: time.Minute})
				var ae *metricsapi.APIError
				if errors.As(err, &ae) && ae.Code != "prometheus-unavailable" {
					err = nil // Prometheus answered; the rest is about the query
				}
				return err
			}})
	return checkGroup{name: compat.CheckViz, checks: checks}
}

func (v *vizFlags) checkDeployments(ctx context.Context) error {
	_, c, err := v.kubeClient()
	if err != nil {
		return err
	}
	list, err := c.AppsV1().Deployments(v.vizNamespace).List(ctx, metav1.ListOptions{LabelSelector: compat.VizSelector})
	if err != nil {
		return fmt.Errorf("listing Deployments in %s: %w", v.vizNamespace, err)
	}
	if len(list.Items) == 0 {
		return fmt.Errorf("no viz Deployments in namespace %s: install with weft viz install | kubectl apply -f -", v.vizNamespace)
	}
	var bad []string
	for _, d := range list.Items {
		if !deploymentAvailable(&d) {
			bad = append(bad, fmt.Sprintf("%s (%d/%d ready)", d.Name, d.Status.ReadyReplicas, d.Status.Replicas))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("not available: %s", strings.Join(bad, ", "))
	}
	return nil
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == "True"
		}
	}
	return false
}

// vizInstalled tells whether the viz extension's namespace exists.
func vizInstalled(ctx context.Context, c kubernetes.Interface, ns string) bool {
	_, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	return err == nil
}
