package controller

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/injector"
	"github.com/weftmesh/weft/internal/serving"
)

// JaegerInjectorOptions are the jaeger-injector command's flags.
type JaegerInjectorOptions struct {
	Kubeconfig string
	Values     inject.TraceValues
	TLSCert    string
	TLSKey     string
	Addr       string
	AdminAddr  string
}

// NewJaegerInjectorCommand returns `weft-controller jaeger-injector`.
func NewJaegerInjectorCommand(log *slog.Logger) *cobra.Command {
	o := JaegerInjectorOptions{Values: inject.DefaultTraceValues()}
	cmd := &cobra.Command{
		Use:   "jaeger-injector",
		Short: "Serve the jaeger extension's admission webhook (trace settings for proxies)",
		Long: `Runs the mutating admission webhook of the jaeger extension: pods that already have the
proxy get the trace settings (collector address and identity, protocol, service name, the pod's
labels as span attributes through a downward-API volume). A pod's or namespace's
config.linkerd.io/trace-collector and config.alpha.linkerd.io/trace-collector-service-account
override the collector. It always admits. See docs/tracing.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunJaegerInjector(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.StringVar(&o.Values.CollectorSvcAddr, "collector-svc-addr", o.Values.CollectorSvcAddr, "the collector's host:port (webhook.collectorSvcAddr)")
	f.StringVar(&o.Values.CollectorSvcAccount, "collector-svc-account", o.Values.CollectorSvcAccount, "the collector's ServiceAccount, for its identity (webhook.collectorSvcAccount)")
	f.StringVar(&o.Values.CollectorTraceProtocol, "collector-trace-protocol", o.Values.CollectorTraceProtocol, "opentelemetry or opencensus (webhook.collectorTraceProtocol)")
	f.StringVar(&o.Values.CollectorTraceSvcName, "collector-trace-svc-name", o.Values.CollectorTraceSvcName, "the service name of the proxies' spans (webhook.collectorTraceSvcName)")
	f.StringVar(&o.Values.ControllerNamespace, "controller-namespace", o.Values.ControllerNamespace, "the control plane's namespace (in identities)")
	f.StringVar(&o.Values.IdentityTrustDomain, "identity-trust-domain", o.Values.IdentityTrustDomain, "the mesh's trust domain (in identities)")
	f.StringVar(&o.TLSCert, "tls-cert", compat.InjectorTLSCertPath, "serving certificate")
	f.StringVar(&o.TLSKey, "tls-key", compat.InjectorTLSKeyPath, "serving key")
	f.StringVar(&o.Addr, "addr", ":8443", "webhook listen address (HTTPS)")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9995", "admin listen address (/metrics, /ready, /live)")
	return cmd
}

// RunJaegerInjector serves until ctx ends or a server fails.
func RunJaegerInjector(ctx context.Context, o JaegerInjectorOptions, log *slog.Logger) error {
	if p := o.Values.CollectorTraceProtocol; p != compat.TraceProtocolOpenTelemetry && p != compat.TraceProtocolOpenCensus {
		return fmt.Errorf("--collector-trace-protocol %q: want %s or %s", p, compat.TraceProtocolOpenTelemetry, compat.TraceProtocolOpenCensus)
	}
	certs := &certReloader{cert: o.TLSCert, key: o.TLSKey}
	if _, err := certs.get(nil); err != nil {
		return err
	}
	_, cluster, err := webhookCluster(ctx, o.Kubeconfig)
	if err != nil {
		return err
	}
	wh := &injector.JaegerWebhook{Values: o.Values, Cluster: cluster, Log: log}
	ls, err := serving.Listen(o.Addr, o.AdminAddr)
	if err != nil {
		return fmt.Errorf("jaeger-injector: %w", err)
	}
	log.Info("jaeger-injector started", "addr", ls[0].Addr().String(), "collector", o.Values.CollectorSvcAddr, "protocol", o.Values.CollectorTraceProtocol)
	return serveWebhook(ctx, log, "jaeger-injector", wh, certs, ls[0], ls[1], newRegistry())
}
