package discovery

import (
	"regexp"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/target"
)

// streamProfile follows the target's profile: each message replaces the
// destination's profile (opaque, routes); the last one stays while the
// control plane is away.
func (r *Resolver) streamProfile(w *watch) error {
	defer w.onceP.Do(func() { close(w.firstProfile) }) // a failed first stream must not hold requests up
	s, err := r.client.WatchProfile(w.ctx, &destinationv1.WatchRequest{Target: w.target, ContextToken: r.token})
	if err != nil {
		return err
	}
	for {
		p, err := s.Recv()
		if err != nil {
			return err
		}
		w.profile.Store(r.profile(w.target, p))
		w.onceP.Do(func() { close(w.firstProfile) })
	}
}

// profile compiles a wire profile; a route whose regex does not compile is
// skipped (and logged), the others kept.
func (r *Resolver) profile(dst string, p *destinationv1.Profile) *target.Profile {
	out := &target.Profile{Opaque: p.GetOpaqueProtocol(), Routes: make([]target.Route, 0, len(p.GetRoutes()))}
	for _, pr := range p.GetRoutes() {
		rt := target.Route{Name: pr.GetName(), Method: pr.GetCondition().GetMethod(), Timeout: pr.GetTimeout().AsDuration(),
			Retryable: pr.GetIsRetryable(), Failure: classify(pr.GetResponseClasses())}
		if re := pr.GetCondition().GetPathRegex(); re != "" {
			compiled, err := regexp.Compile("^(?:" + re + ")$")
			if err != nil {
				r.log.Warn("profile route skipped: bad pathRegex", "target", dst, "route", pr.GetName(), "err", err)
				continue
			}
			rt.Path = compiled
		}
		out.Routes = append(out.Routes, rt)
	}
	return out
}

// classify turns response classes into a failure test: the first class
// whose status range holds the status decides; otherwise 5xx fail.
func classify(classes []*destinationv1.ResponseClass) func(int) bool {
	if len(classes) == 0 {
		return nil
	}
	return func(status int) bool {
		for _, c := range classes {
			if uint32(status) >= c.GetStatusMin() && uint32(status) <= c.GetStatusMax() {
				return c.GetIsFailure()
			}
		}
		return status >= 500
	}
}
