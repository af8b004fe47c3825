package discovery

import (
	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/routeapi"
)

// streamPolicy follows the target's routing table. A table the proxy
// cannot use whole is refused and the last good one kept; so is the last
// table when the stream ends (keep reconnects).
func (r *Resolver) streamPolicy(w *watch) error {
	// A first stream that fails must not hold Resolve back.
	defer w.oncePolicy.Do(func() { close(w.firstPolicy) })
	s, err := r.policy.Watch(w.ctx, &policyv1.OutboundRequest{Target: w.target, ContextToken: r.token})
	if err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		t, err := routeapi.Decode(m)
		if err != nil {
			r.log.Warn("routing table refused; keeping the last one", "target", w.target, "err", err)
			continue
		}
		w.routes.Store(t)
		w.policyUpdates.Add(1)
		w.oncePolicy.Do(func() { close(w.firstPolicy) })
	}
}

// PolicyUpdates reports how many routing tables a target's watch has
// stored (for tests and debugging).
func (r *Resolver) PolicyUpdates(target string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.watches[target]; ok {
		return w.policyUpdates.Load()
	}
	return 0
}
