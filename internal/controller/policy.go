package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inboundpolicy"
)

// PolicyOptions are the policy command's flags.
type PolicyOptions struct {
	Kubeconfig    string
	ClusterDomain string
	ControllerNS  string
	Addr          string
	AdminAddr     string
	// Inbound policy (internal/inboundpolicy).
	TrustDomain          string
	DefaultInboundPolicy string
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
(Accepted, ResolvedRefs) is written back. The gRPC port is plaintext: keep it on a trusted
network.`,
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
	f.StringVar(&o.DefaultInboundPolicy, "default-inbound-policy", "all-unauthenticated", "the cluster's default inbound policy (proxy.defaultInboundPolicy)")
	return cmd
}

// RunPolicy serves until ctx ends. Every policy service shares the one
// gRPC server; each is registered here explicitly.
func RunPolicy(ctx context.Context, o PolicyOptions, log *slog.Logger) error {
	srv := grpc.NewServer()
	policyv1.RegisterOutboundPoliciesServer(srv, policyv1.UnimplementedOutboundPoliciesServer{})
	inbound, err := startInboundPolicy(ctx, o, log)
	if err != nil {
		return err
	}
	policyv1.RegisterInboundPoliciesServer(srv, inboundpolicy.NewServer(inbound.Index, inbound.Synced, log))
	return serve(ctx, component{name: "policy", addr: o.Addr, adminAddr: o.AdminAddr, srv: srv,
		metrics: prometheus.NewRegistry(), ready: func() bool { return true }, grace: 5 * time.Second, log: log,
		attrs: []any{"cluster-domain", o.ClusterDomain}})
}
