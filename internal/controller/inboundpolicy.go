package controller

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/inboundpolicy"
)

// startInboundPolicy builds the inbound policy index and starts its
// informers (the policy command's InboundPolicies service).
func startInboundPolicy(ctx context.Context, o PolicyOptions, client kubernetes.Interface, dyn dynamic.Interface, log *slog.Logger) (*inboundpolicy.Watcher, error) {
	d, err := authz.ParseDefaultPolicy(o.DefaultInboundPolicy)
	if err != nil {
		return nil, fmt.Errorf("--default-inbound-policy: %w", err)
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
