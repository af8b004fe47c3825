package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/kubeclient"
	"github.com/weftmesh/weft/internal/serving"
	"github.com/weftmesh/weft/internal/version"
	"github.com/weftmesh/weft/internal/viz/dashboard"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
	"github.com/weftmesh/weft/internal/viz/tapapi"
)

// MetricsAPIOptions are the metrics-api command's flags.
type MetricsAPIOptions struct {
	Addr, AdminAddr string
	PrometheusURL   string
	// Kubeconfig, unless NoKube: the API lists resources and counts pods
	// from Kubernetes. Without it, resources come from Prometheus alone.
	Kubeconfig string
	NoKube     bool
}

// NewMetricsAPICommand returns `weft-controller metrics-api`.
func NewMetricsAPICommand(log *slog.Logger) *cobra.Command {
	o := MetricsAPIOptions{}
	cmd := &cobra.Command{
		Use:   "metrics-api",
		Short: "Serve viz's metrics API (golden metrics and edges from Prometheus, as JSON)",
		Long: `Serves GET /api/v1/stat (success rate, requests per second, latency p50/p95/p99, TCP
connections, meshed/total pods of namespaces, deployments, statefulsets, daemonsets, jobs,
pods and services, optionally restricted to traffic --from or --to one resource),
GET /api/v1/edges (who talks to whom, with mTLS identities) and GET /api/v1/version, computed
from the proxies' metrics in Prometheus, and GET /api/v1/prometheus-sd: the cluster's pods for
Prometheus's http_sd_configs, with the labels of its Kubernetes discovery (role: pod). Resources and pod counts come from the Kubernetes
API; with --no-kube, from Prometheus alone (meshed pods only). Errors are JSON
{"error":{"code","message"}}: 400 unknown-kind or bad-request, 404 not-found or not-meshed,
503 prometheus-unavailable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunMetricsAPI(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", ":8085", "API listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9995", "admin listen address (/metrics, /ready, /live)")
	f.StringVar(&o.PrometheusURL, "prometheus-url", compat.VizPrometheusURL, "Prometheus to query")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.BoolVar(&o.NoKube, "no-kube", false, "no Kubernetes API: resources are those whose proxies Prometheus scrapes")
	return cmd
}

// NewMetricsAPIService builds the metrics API's service from the options.
func NewMetricsAPIService(o MetricsAPIOptions) (*metricsapi.Service, error) {
	prom, err := metricsapi.NewPromQuerier(o.PrometheusURL)
	if err != nil {
		return nil, err
	}
	svc := &metricsapi.Service{Prom: prom, Lister: &metricsapi.PromLister{Prom: prom}}
	if !o.NoKube {
		cfg, err := kubeclient.Config(o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("%w (or run with --no-kube)", err)
		}
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
		svc.Lister, svc.Kube = &metricsapi.KubeLister{Client: c}, c
	}
	return svc, nil
}

// RunMetricsAPI serves until ctx ends or a server fails.
func RunMetricsAPI(ctx context.Context, o MetricsAPIOptions, log *slog.Logger) error {
	svc, err := NewMetricsAPIService(o)
	if err != nil {
		return err
	}
	return serveHTTPComponent(ctx, log, "metrics-api", o.Addr, o.AdminAddr,
		metricsapi.Handler(svc, version.Version, log), "prometheus-url", o.PrometheusURL, "kube", !o.NoKube)
}

// serveHTTPComponent serves handler on addr and the admin server on
// adminAddr until ctx ends.
func serveHTTPComponent(ctx context.Context, log *slog.Logger, name, addr, adminAddr string, handler http.Handler, attrs ...any) error {
	ls, err := serving.Listen(addr, adminAddr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var stopping atomic.Bool
	adm := adminServer(log, newRegistry(), func() bool { return !stopping.Load() })
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Info(name+" started", append([]any{"addr", ls[0].Addr().String(), "admin-addr", ls[1].Addr().String()}, attrs...)...)
	return serving.Run(ctx, func(error) { stopping.Store(true) },
		serving.HTTP(name+" server", ls[0], srv, 5*time.Second),
		serving.HTTP(name+" admin server", ls[1], adm, 0))
}

// WebOptions are the web command's flags.
type WebOptions struct {
	Addr, AdminAddr                string
	MetricsAPIAddr                 string
	EnforcedHost                   string
	GrafanaURL, GrafanaExternalURL string
	JaegerURL                      string
	// TapAddr reaches the tap server for the live tap ("" disables it),
	// with the token in TapTokenFile (the web ServiceAccount's).
	TapAddr, TapTokenFile string
}

// NewWebCommand returns `weft-controller web`.
func NewWebCommand(log *slog.Logger) *cobra.Command {
	o := WebOptions{}
	cmd := &cobra.Command{
		Use:   "web",
		Short: "Serve viz's web dashboard",
		Long: `Serves the dashboard (assets embedded): namespaces and their workloads with golden metrics
and edges, from the metrics API. Requests whose Host header does not match --enforced-host
are refused with 403 (DNS-rebinding protection; the chart's dashboard.enforcedHostRegexp).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunWeb(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", ":8084", "dashboard listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9994", "admin listen address (/metrics, /ready, /live)")
	f.StringVar(&o.MetricsAPIAddr, "metrics-api-addr", compat.VizMetricsAPIAddr, "the metrics API (host:port or URL)")
	f.StringVar(&o.EnforcedHost, "enforced-host", dashboard.DefaultEnforcedHost(compat.VizNamespace, "cluster.local"), "regexp the Host header must match")
	f.StringVar(&o.GrafanaURL, "grafana-url", "", "Grafana's address, for links to its dashboards")
	f.StringVar(&o.GrafanaExternalURL, "grafana-external-url", "", "Grafana's address as the browser reaches it")
	f.StringVar(&o.JaegerURL, "jaeger-url", "", "Jaeger's address")
	f.StringVar(&o.TapAddr, "tap-addr", "", "the tap server (host:port or URL), for the workload page's live tap (empty: no live tap)")
	f.StringVar(&o.TapTokenFile, "tap-token-file", "/var/run/secrets/kubernetes.io/serviceaccount/token", "the bearer token the tap server authorizes (this pod's ServiceAccount)")
	return cmd
}

// RunWeb serves the dashboard until ctx ends or a server fails.
func RunWeb(ctx context.Context, o WebOptions, log *slog.Logger) error {
	re, err := regexp.Compile(o.EnforcedHost)
	if err != nil {
		return fmt.Errorf("--enforced-host %q: %w", o.EnforcedHost, err)
	}
	base := o.MetricsAPIAddr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	api := &metricsapi.Client{Base: strings.TrimSuffix(base, "/"), HTTP: &http.Client{Timeout: 20 * time.Second}}
	var tap *dashboard.Tap
	if o.TapAddr != "" {
		tb := o.TapAddr
		if !strings.Contains(tb, "://") {
			tb = "http://" + tb
		}
		tap = &dashboard.Tap{Client: &tapapi.Client{Base: strings.TrimSuffix(tb, "/")}, Token: func() (string, error) {
			b, err := os.ReadFile(o.TapTokenFile)
			return strings.TrimSpace(string(b)), err
		}}
	}
	h := dashboard.Handler(api, re, dashboard.Config{GrafanaURL: o.GrafanaURL, GrafanaExternalURL: o.GrafanaExternalURL,
		JaegerURL: o.JaegerURL, Version: version.Version, Tap: tap}, log)
	return serveHTTPComponent(ctx, log, "web", o.Addr, o.AdminAddr, h, "metrics-api", api.Base, "enforced-host", o.EnforcedHost)
}
