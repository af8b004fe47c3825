package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/destination"
	dstkube "github.com/weftmesh/weft/internal/destination/kube"
	"github.com/weftmesh/weft/internal/kubeclient"
)

// DestinationOptions are the destination command's flags.
type DestinationOptions struct {
	Kubeconfig    string
	ClusterDomain string
	ControllerNS  string
	TrustDomain   string
	Registry      string
	Addr          string
	AdminAddr     string
	Reload        time.Duration
	// TLS: the controller's own certificate, or --plaintext.
	TLS ServingIdentity
	// Trace: a server span per gRPC call when a collector is set.
	Trace TraceOptions
}

// NewDestinationCommand returns `weft-controller destination`.
func NewDestinationCommand(log *slog.Logger) *cobra.Command {
	o := DestinationOptions{}
	cmd := &cobra.Command{
		Use:   "destination",
		Short: "Serve service discovery to proxies",
		Long: `Runs the destination service: proxies watch a target (a service authority or an IP:port)
and receive its endpoints as incremental updates, with each endpoint's identity and protocol.

With Kubernetes (the default) it watches Services, EndpointSlices, Pods and Namespaces. On hosts
without Kubernetes, --registry serves a file (YAML or JSON, re-read when it changes).

gRPC is served over mTLS: the controller obtains its own certificate from the identity service
with its ServiceAccount token (as a proxy does), renews it, and requires every client to present
a certificate chained to the trust anchors. It is ready once it holds a certificate. --plaintext
serves without TLS (no identity service; keep it on a trusted network).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunDestination(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Registry, "registry", "", "registry file of services and endpoints, instead of Kubernetes")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	f.StringVar(&o.ControllerNS, "controller-namespace", compat.DefaultControlPlaneNamespace, "the control plane's namespace (part of identities)")
	f.StringVar(&o.TrustDomain, "identity-trust-domain", "cluster.local", "trust domain of proxy identities")
	f.StringVar(&o.Addr, "addr", ":8086", "gRPC listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9996", "admin listen address (/metrics, /ready, /live)")
	f.DurationVar(&o.Reload, "registry-poll", time.Second, "how often the registry file is checked for changes")
	o.TLS.flags(f)
	o.Trace.flags(f, compat.DestinationComponent)
	return cmd
}

// RunDestination serves until ctx ends.
func RunDestination(ctx context.Context, o DestinationOptions, log *slog.Logger) error {
	var backend destination.Backend
	var collectors []prometheus.Collector
	if o.Registry != "" {
		fb, err := destination.NewFileBackend(o.Registry, log)
		if err != nil {
			return err
		}
		go fb.Run(ctx, o.Reload)
		backend = fb
		collectors = append(collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "destination_registry_loads_total",
			Help: "Versions of the --registry file loaded, the first included (an invalid one is not counted)."},
			func() float64 { return float64(fb.Loads()) }))
	} else {
		client, dyn, err := kubeclient.Clients(o.Kubeconfig, 0)
		if err != nil {
			return err
		}
		kb, err := dstkube.NewFromClient(client, dyn, dstkube.Config{ClusterDomain: o.ClusterDomain,
			ControlPlaneNS: o.ControllerNS, TrustDomain: o.TrustDomain}, log, ctx.Done())
		if err != nil {
			return fmt.Errorf("kubernetes backend: %w", err)
		}
		backend = kb
	}
	tlsc, err := o.TLS.start(ctx, destinationIdentity(o.ControllerNS, o.TrustDomain), o.ControllerNS, o.ClusterDomain, o.TrustDomain, log)
	if err != nil {
		return err
	}
	reg := newRegistry()
	reg.MustRegister(tlsc.collectors...)
	reg.MustRegister(collectors...)
	traceOpts, stopTrace, err := serverTracing(o.Trace, reg, log)
	if err != nil {
		return err
	}
	defer stopTrace()
	srv, initMetrics := newGRPCServer(reg, append(tlsc.opts, traceOpts...)...)
	destinationv1.RegisterDestinationServer(srv, destination.NewServer(backend, log))
	initMetrics()
	// Watch streams never end by themselves: cut them after a short grace.
	return serve(ctx, component{name: "destination", addr: o.Addr, adminAddr: o.AdminAddr, srv: srv,
		metrics: reg, ready: tlsc.ready, grace: 5 * time.Second, log: log,
		attrs: []any{"registry", o.Registry, "kubernetes", o.Registry == "", "tls-identity", tlsc.identity}})
}
