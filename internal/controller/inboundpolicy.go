package controller

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/inboundpolicy"
	"github.com/weftmesh/weft/internal/kubeclient"
)

// startInboundPolicy builds the inbound policy index and starts its
// informers (the policy command's InboundPolicies service).
func startInboundPolicy(ctx context.Context, o PolicyOptions, log *slog.Logger) (*inboundpolicy.Watcher, error) {
	d, err := authz.ParseDefaultPolicy(o.DefaultInboundPolicy)
	if err != nil {
		return nil, fmt.Errorf("--default-inbound-policy: %w", err)
	}
	cfg, err := kubeclient.Config(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	idx := inboundpolicy.NewIndex(inboundpolicy.Options{ControllerNamespace: o.ControllerNS, TrustDomain: o.TrustDomain, Default: d})
	w := inboundpolicy.NewWatcher(client, dyn, idx, log)
	go func() {
		if err := w.Run(ctx); err != nil {
			log.Error("inbound policy watcher stopped", "err", err)
		}
	}()
	return w, nil
}
