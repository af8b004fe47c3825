package metricsapi

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/weftmesh/weft/internal/compat"
)

// PathRoutes is GET /api/v1/routes.
const PathRoutes = "/api/v1/routes"

// DefaultRouteName is how the routes table names requests no route matched
// (the proxy's default route of a Service), as Linkerd viz prints it.
const DefaultRouteName = "[DEFAULT]"

// ResourceRequest asks about one resource (or, where the query allows,
// every resource of a kind in a namespace) over a time window: the
// routes and authz queries.
type ResourceRequest struct {
	Kind      Kind
	Namespace string
	Name      string
	Window    time.Duration
}

// RoutesRequest asks for per-route metrics: of the routes a workload's
// proxies send requests on (Kind a workload), or of the routes attached to
// a Service, whoever the client (Kind service). Name is required.
type RoutesRequest = ResourceRequest

// RouteRow is one route of one parent Service port.
type RouteRow struct {
	// Parent is the Service the route is attached to, in ParentNamespace,
	// on ParentPort.
	ParentNamespace string `json:"parentNamespace"`
	Parent          string `json:"parent"`
	ParentPort      string `json:"parentPort"`
	// Route is the route's name; DefaultRouteName for requests no route
	// matched. RouteKind is HTTPRoute, GRPCRoute or default.
	Route          string   `json:"route"`
	RouteKind      string   `json:"routeKind"`
	RouteNamespace string   `json:"routeNamespace,omitempty"`
	Requests       float64  `json:"requests"`
	Successes      float64  `json:"successes"`
	SuccessRate    *float64 `json:"successRate,omitempty"`
	RPS            *float64 `json:"rps,omitempty"`
	LatencyP50Ms   *float64 `json:"latencyP50Ms,omitempty"`
	LatencyP95Ms   *float64 `json:"latencyP95Ms,omitempty"`
	LatencyP99Ms   *float64 `json:"latencyP99Ms,omitempty"`
}

// RoutesResponse is the answer to GET /api/v1/routes.
type RoutesResponse struct {
	Window string     `json:"window"`
	Rows   []RouteRow `json:"rows"`
}

// routeBy are the labels a route row is keyed by.
var routeBy = []string{compat.LabelParentNamespace, compat.LabelParentName, compat.LabelParentPort,
	compat.LabelRouteKind, compat.LabelRouteNamespace, compat.LabelRouteName}

// routeSelector is the matcher set of the request's route series.
func routeSelector(r *RoutesRequest) (selector, error) {
	if r.Window <= 0 {
		r.Window = DefaultWindow
	}
	if r.Name == "" {
		return nil, &BadRequestError{Msg: fmt.Sprintf("routes needs one resource: %s/NAME", r.Kind)}
	}
	if r.Kind == KindNamespace {
		return nil, &BadRequestError{Msg: "routes are of a workload or a service, not of a namespace"}
	}
	if r.Namespace == "" {
		return nil, &BadRequestError{Msg: fmt.Sprintf("a namespace is needed for %s/%s", r.Kind, r.Name)}
	}
	if r.Kind == KindService {
		return selector{compat.LabelParentNamespace: r.Namespace, compat.LabelParentName: r.Name}, nil
	}
	return selector{"namespace": r.Namespace, r.Kind.label(): r.Name}, nil
}

// Routes answers a routes request from the proxies' outbound route
// metrics (outbound_http_route_* and outbound_grpc_route_*). A request is a
// success when the proxy recorded no error and the status is not a 5xx
// (HTTP) or is OK (gRPC).
func (s *Service) Routes(ctx context.Context, r RoutesRequest) (*RoutesResponse, error) {
	sel, err := routeSelector(&r)
	if err != nil {
		return nil, err
	}
	w, at := promDuration(r.Window), s.now()
	by := strings.Join(routeBy, ", ")
	type acc struct {
		req, ok       float64
		p50, p95, p99 *float64
	}
	accs := map[string]*acc{}
	rows := map[string]RouteRow{}
	get := func(m model.Metric) *acc {
		k := routeKey(m)
		if accs[k] == nil {
			accs[k] = &acc{}
			row := RouteRow{ParentNamespace: string(m[compat.LabelParentNamespace]), Parent: string(m[compat.LabelParentName]),
				ParentPort: string(m[compat.LabelParentPort]), RouteKind: string(m[compat.LabelRouteKind]),
				RouteNamespace: string(m[compat.LabelRouteNamespace]), Route: string(m[compat.LabelRouteName])}
			if row.RouteKind == compat.RouteKindDefault {
				row.Route, row.RouteNamespace = DefaultRouteName, ""
			}
			rows[k] = row
		}
		return accs[k]
	}
	type query struct {
		q     string
		apply func(model.Vector)
	}
	var queries []query
	for _, fam := range []struct {
		statuses, duration, status string
		success                    func(string) bool
	}{
		{compat.MetricHTTPRouteRequestStatuses, compat.MetricHTTPRouteRequestDuration, compat.LabelHTTPStatus,
			func(s string) bool { return s != "" && !strings.HasPrefix(s, "5") }},
		{compat.MetricGRPCRouteRequestStatuses, compat.MetricGRPCRouteRequestDuration, compat.LabelRouteGRPCStatus,
			func(s string) bool { return s == "OK" }},
	} {
		queries = append(queries, query{fmt.Sprintf("sum(increase(%s%s[%s])) by (%s, %s, %s)", fam.statuses, sel, w, by, fam.status, compat.LabelError),
			func(v model.Vector) {
				for _, smp := range v {
					a, f := get(smp.Metric), float64(smp.Value)
					a.req += f
					if smp.Metric[compat.LabelError] == "" && fam.success(string(smp.Metric[model.LabelName(fam.status)])) {
						a.ok += f
					}
				}
			}})
		for _, q := range []struct {
			q   float64
			set func(*acc, *float64)
		}{{0.5, func(a *acc, f *float64) { a.p50 = f }}, {0.95, func(a *acc, f *float64) { a.p95 = f }}, {0.99, func(a *acc, f *float64) { a.p99 = f }}} {
			queries = append(queries, query{fmt.Sprintf("histogram_quantile(%g, sum(rate(%s_bucket%s[%s])) by (le, %s)) * 1000", q.q, fam.duration, sel, w, by),
				func(v model.Vector) {
					for _, smp := range v {
						if f := value(smp); f != nil {
							q.set(get(smp.Metric), f)
						}
					}
				}})
		}
	}
	results := make([]model.Vector, len(queries))
	g, gctx := errgroup.WithContext(ctx)
	for i, q := range queries {
		g.Go(func() (err error) { results[i], err = s.Prom.Query(gctx, q.q, at); return })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, q := range queries {
		q.apply(results[i])
	}
	out := &RoutesResponse{Window: r.Window.String(), Rows: []RouteRow{}}
	for k, a := range accs {
		row := rows[k]
		row.Requests, row.Successes = a.req, a.ok
		if a.req > 0 {
			sr, rps := a.ok/a.req, a.req/r.Window.Seconds()
			row.SuccessRate, row.RPS = &sr, &rps
		}
		row.LatencyP50Ms, row.LatencyP95Ms, row.LatencyP99Ms = a.p50, a.p95, a.p99
		out.Rows = append(out.Rows, row)
	}
	sort.Slice(out.Rows, func(i, j int) bool {
		a, b := out.Rows[i], out.Rows[j]
		if a.ParentNamespace+"/"+a.Parent+":"+a.ParentPort != b.ParentNamespace+"/"+b.Parent+":"+b.ParentPort {
			return a.ParentNamespace+"/"+a.Parent+":"+a.ParentPort < b.ParentNamespace+"/"+b.Parent+":"+b.ParentPort
		}
		if (a.Route == DefaultRouteName) != (b.Route == DefaultRouteName) {
			return b.Route == DefaultRouteName // the default route last, as Linkerd prints it
		}
		return a.Route < b.Route
	})
	return out, nil
}

func routeKey(m model.Metric) string {
	parts := make([]string, len(routeBy))
	for i, l := range routeBy {
		parts[i] = string(m[model.LabelName(l)])
	}
	return strings.Join(parts, "\x00")
}

// ResourceRequestFromQuery parses the parameters of GET /api/v1/routes and
// GET /api/v1/authz.
func ResourceRequestFromQuery(v url.Values) (ResourceRequest, error) {
	var r ResourceRequest
	k, err := ParseKind(v.Get(qKind))
	if err != nil {
		return r, err
	}
	r.Kind, r.Namespace, r.Name = k, v.Get(qNamespace), v.Get(qName)
	r.Window, err = parseWindow(v.Get(qWindow))
	return r, err
}

// Query is the request's URL query.
func (r ResourceRequest) Query() url.Values {
	v := url.Values{qKind: {string(r.Kind)}}
	for k, val := range map[string]string{qNamespace: r.Namespace, qName: r.Name} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if r.Window > 0 {
		v.Set(qWindow, r.Window.String())
	}
	return v
}

// Routes calls GET /api/v1/routes.
func (c *Client) Routes(ctx context.Context, r RoutesRequest) (*RoutesResponse, error) {
	var out RoutesResponse
	return &out, c.get(ctx, PathRoutes, r.Query(), &out)
}
