package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/policyclient"
	"github.com/weftmesh/weft/internal/proxy"
)

// newPolicies returns the inbound policy source: the policy controller's
// client when its address and the workload are known, else nil (the
// proxy's static default policy).
func newPolicies(ctx context.Context, cfg proxy.PolicyConfig, log *slog.Logger) (authz.Source, error) {
	if cfg.SvcAddr == "" || cfg.Workload == "" {
		return nil, nil
	}
	static, err := cfg.StaticPolicies()
	if err != nil {
		return nil, fmt.Errorf("inbound policy: %w", err)
	}
	conn, err := grpc.NewClient(cfg.SvcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second}}))
	if err != nil {
		return nil, fmt.Errorf("policy service %s: %w", cfg.SvcAddr, err)
	}
	go func() { <-ctx.Done(); conn.Close() }()
	return policyclient.New(ctx, policyv1.NewInboundPoliciesClient(conn), policyclient.Options{Log: log,
		Workload: cfg.Workload, Static: static, Cluster: cfg.ClusterNetworks}), nil
}
