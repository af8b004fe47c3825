package main

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/policyclient"
	"github.com/weftmesh/weft/internal/proxy"
)

// newPolicies returns the inbound policy source: the policy controller's
// client over conn when there is one and the workload is known, else nil
// (the proxy's static default policy).
func newPolicies(ctx context.Context, conn *grpc.ClientConn, cfg proxy.PolicyConfig, log *slog.Logger) (authz.Source, error) {
	if conn == nil || cfg.Workload == "" {
		return nil, nil
	}
	static, err := cfg.StaticPolicies()
	if err != nil {
		return nil, fmt.Errorf("inbound policy: %w", err)
	}
	return policyclient.New(ctx, policyv1.NewInboundPoliciesClient(conn), policyclient.Options{Log: log,
		Workload: cfg.Workload, Static: static, Cluster: cfg.ClusterNetworks}), nil
}
