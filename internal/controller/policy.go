package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inboundpolicy"
	"github.com/weftmesh/weft/internal/kubeclient"
	"github.com/weftmesh/weft/internal/policy/outbound"
	outboundkube "github.com/weftmesh/weft/internal/policy/outbound/kube"
	"github.com/weftmesh/weft/internal/serving"
)

// PolicyOptions are the policy command's flags.
type PolicyOptions struct {
	Kubeconfig    string
	ClusterDomain string
	ControllerNS  string
	Addr          string
	AdminAddr     string
	// Bound, when set, is told the gRPC and admin addresses once both are
	// bound (with port 0 the system picks them).
	Bound func(addr, adminAddr string)
	// Inbound policy (internal/inboundpolicy).
	TrustDomain          string
	DefaultInboundPolicy string
	// TLS: the controller's own certificate, or --plaintext.
	TLS ServingIdentity
}

// NewPolicyCommand returns `weft-controller policy`.
func NewPolicyCommand(log *slog.Logger) *cobra.Command {
	o := PolicyOptions{}
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Serve routing policy to proxies",
		Long: `Runs the policy controller: proxies watch a Service port (its authority or ClusterIP:port)
and receive its routing table, built from the HTTPRoutes and GRPCRoutes attached to it
(gateway.networking.k8s.io and policy.linkerd.io) and the Service's timeout, retry and
failure-accrual annotations, with an update whenever one of them changes. Routes' status
(Accepted, ResolvedRefs) is written back.

gRPC is served over mTLS with the controller's own certificate from the identity service, as
the destination service does (see its help); --plaintext serves without TLS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunPolicy(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	f.StringVar(&o.ControllerNS, "controller-namespace", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
	f.StringVar(&o.Addr, "addr", ":8090", "gRPC listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9990", "admin listen address (/metrics, /ready, /live)")
	f.StringVar(&o.TrustDomain, "identity-trust-domain", "cluster.local", "trust domain of proxy identities (ServiceAccount references)")
	o.TLS.flags(f)
	f.StringVar(&o.DefaultInboundPolicy, "default-inbound-policy", "all-unauthenticated", "the cluster's default inbound policy (proxy.defaultInboundPolicy)")
	return cmd
}

// RunPolicy serves until ctx ends. Every policy service shares the one
// gRPC server; each is registered here explicitly.
func RunPolicy(ctx context.Context, o PolicyOptions, log *slog.Logger) error {
	client, dyn, err := kubeclient.Clients(o.Kubeconfig, 0)
	if err != nil {
		return err
	}
	ix := outbound.NewIndex(o.ClusterDomain, log)
	outKube, err := outboundkube.Start(ctx, client, dyn, ix, log)
	if err != nil {
		return fmt.Errorf("outbound policy: %w", err)
	}
	tlsc, err := o.TLS.start(ctx, destinationIdentity(o.ControllerNS, o.TrustDomain), o.ControllerNS, o.ClusterDomain, o.TrustDomain, log)
	if err != nil {
		return err
	}
	reg := newRegistry()
	reg.MustRegister(tlsc.collectors...)
	srv, initMetrics := newGRPCServer(reg, tlsc.opts...)
	policyv1.RegisterOutboundPoliciesServer(srv, outbound.NewServer(ix, log))
	inbound, err := startInboundPolicy(ctx, o, client, dyn, log)
	if err != nil {
		return err
	}
	policyv1.RegisterInboundPoliciesServer(srv, inboundpolicy.NewServer(inbound.Index, inbound.Synced, log))
	initMetrics()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "policy_outbound_watches",
			Help: "OutboundPolicies streams open."}, func() float64 { return float64(ix.Watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "policy_outbound_routes",
			Help: "Routes with a Service parent in the index, valid or not."}, func() float64 { return float64(ix.Routes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "policy_route_status_writes_total",
			Help: "Route status updates written."}, func() float64 { return float64(outKube.StatusWrites.Load()) }),
	)
	ls, err := serving.Listen(o.Addr, o.AdminAddr)
	if err != nil {
		return err
	}
	if o.Bound != nil {
		o.Bound(ls[0].Addr().String(), ls[1].Addr().String())
	}
	// Watch streams never end by themselves: cut them after a short grace.
	return serveOn(ctx, component{name: "policy", addr: o.Addr, adminAddr: o.AdminAddr, srv: srv,
		metrics: reg, ready: func() bool { return outKube.Ready() && tlsc.ready() }, grace: 5 * time.Second, log: log,
		attrs: []any{"cluster-domain", o.ClusterDomain, "tls-identity", tlsc.identity}}, ls[0], ls[1])
}
