package discovery

import (
	"context"
	"log/slog"
	"regexp"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/proxy"
)

// route is a profile route compiled for matching.
type route struct {
	method string
	path   *regexp.Regexp // nil: any
	out    proxy.Route
}

var _ proxy.RouteResolver = (*Resolver)(nil)

// Route implements proxy.RouteResolver from the target's profile stream.
func (r *Resolver) Route(dst, method, path string) (proxy.Route, bool) {
	r.mu.Lock()
	w := r.watches[dst]
	r.mu.Unlock()
	if w == nil {
		return proxy.Route{}, false
	}
	routes := w.routes.Load()
	if routes == nil {
		return proxy.Route{}, false
	}
	for _, rt := range *routes {
		if (rt.method == "" || rt.method == method) && (rt.path == nil || rt.path.MatchString(path)) {
			return rt.out, true
		}
	}
	return proxy.Route{}, false
}

// runProfile keeps the target's profile stream open, like run does for
// endpoints; the last routes stay while the control plane is away.
func (r *Resolver) runProfile(w *watch) {
	r.keep(w, r.streamProfile, slog.LevelDebug, "profile stream ended; keeping the last routes")
}

func (r *Resolver) streamProfile(w *watch) error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	s, err := r.client.WatchProfile(ctx, &destinationv1.WatchRequest{Target: w.target})
	if err != nil {
		return err
	}
	for {
		p, err := s.Recv()
		if err != nil {
			return err
		}
		routes := make([]route, 0, len(p.GetRoutes()))
		for _, pr := range p.GetRoutes() {
			rt := route{method: pr.GetCondition().GetMethod(), out: proxy.Route{Name: pr.GetName(),
				Timeout: pr.GetTimeout().AsDuration(), Retryable: pr.GetIsRetryable(), Failure: classify(pr.GetResponseClasses())}}
			if re := pr.GetCondition().GetPathRegex(); re != "" {
				compiled, err := regexp.Compile("^(?:" + re + ")$")
				if err != nil {
					r.log.Warn("profile route skipped: bad pathRegex", "target", w.target, "route", pr.GetName(), "err", err)
					continue
				}
				rt.path = compiled
			}
			routes = append(routes, rt)
		}
		w.routes.Store(&routes)
	}
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
