package metricsapi

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/weftmesh/weft/internal/compat"
)

// PathAuthz is GET /api/v1/authz.
const PathAuthz = "/api/v1/authz"

// AuthzRequest asks for the inbound authorization decisions of a
// workload's proxies (Name "": of every workload of the kind in the
// namespace).
type AuthzRequest = ResourceRequest

// AuthzRow is the decisions for one Server, route and authorization: the
// rate of requests (HTTP) or connections (TCP) it let in and, on its row
// without an authorization, the rate denied.
type AuthzRow struct {
	Protocol string `json:"protocol"` // http or tcp
	// Server is kind/name of the Server (or default:<policy> for the
	// default policy).
	Server string `json:"server"`
	// Route is the inbound route's kind/name; "" for TCP and for requests
	// decided before routing.
	Route string `json:"route,omitempty"`
	// Authorization is the kind/name of what allowed the traffic; "" on
	// the row of denied traffic.
	Authorization string  `json:"authorization,omitempty"`
	Allowed       float64 `json:"allowed"` // counted in the window
	Denied        float64 `json:"denied"`
	AllowedRPS    float64 `json:"allowedRps"`
	DeniedRPS     float64 `json:"deniedRps"`
}

// AuthzResponse is the answer to GET /api/v1/authz.
type AuthzResponse struct {
	Window string     `json:"window"`
	Rows   []AuthzRow `json:"rows"`
}

// Authz answers an authz request from the proxies'
// inbound_{http,tcp}_authz_{allow,deny}_total counters.
func (s *Service) Authz(ctx context.Context, r AuthzRequest) (*AuthzResponse, error) {
	if r.Window <= 0 {
		r.Window = DefaultWindow
	}
	switch {
	case r.Kind == KindService:
		return nil, &BadRequestError{Msg: "authorizations are decided by a workload's proxies: give a workload, not a service"}
	case r.Namespace == "" && r.Kind != KindNamespace:
		return nil, &BadRequestError{Msg: fmt.Sprintf("a namespace is needed for %s", r.Kind)}
	}
	sel := selector{}
	addSelf(sel, r.Kind, r.Namespace, r.Name)
	if r.Kind == KindNamespace && r.Name == "" && r.Namespace != "" {
		sel["namespace"] = r.Namespace
	}
	w, at := promDuration(r.Window), s.now()
	srvBy := []string{compat.LabelSrvKind, compat.LabelSrvName}
	routeBy := append(append([]string{}, srvBy...), compat.LabelRouteKind, compat.LabelRouteName)
	authzBy := []string{compat.LabelAuthzKind, compat.LabelAuthzName}
	type query struct {
		proto  string
		metric string
		by     []string
		allow  bool
	}
	queries := []query{
		{"http", compat.MetricInboundHTTPAuthzAllow, append(append([]string{}, routeBy...), authzBy...), true},
		{"http", compat.MetricInboundHTTPAuthzDeny, routeBy, false},
		{"tcp", compat.MetricInboundTCPAuthzAllow, append(append([]string{}, srvBy...), authzBy...), true},
		{"tcp", compat.MetricInboundTCPAuthzDeny, srvBy, false},
	}
	results := make([]model.Vector, len(queries))
	g, gctx := errgroup.WithContext(ctx)
	for i, q := range queries {
		g.Go(func() (err error) {
			results[i], err = s.Prom.Query(gctx, fmt.Sprintf("sum(increase(%s%s[%s])) by (%s)", q.metric, sel, w, strings.Join(q.by, ", ")), at)
			return
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	kindName := func(m model.Metric, kind, name string) string {
		n := string(m[model.LabelName(name)])
		if n == "" {
			return ""
		}
		if k := string(m[model.LabelName(kind)]); k != "" {
			return strings.ToLower(k) + "/" + n
		}
		return n
	}
	rows := map[AuthzRow]*AuthzRow{}
	for i, q := range queries {
		for _, smp := range results[i] {
			key := AuthzRow{Protocol: q.proto,
				Server:        kindName(smp.Metric, compat.LabelSrvKind, compat.LabelSrvName),
				Route:         kindName(smp.Metric, compat.LabelRouteKind, compat.LabelRouteName),
				Authorization: kindName(smp.Metric, compat.LabelAuthzKind, compat.LabelAuthzName)}
			row := rows[key]
			if row == nil {
				k := key
				row = &k
				rows[key] = row
			}
			if q.allow {
				row.Allowed += float64(smp.Value)
			} else {
				row.Denied += float64(smp.Value)
			}
		}
	}
	out := &AuthzResponse{Window: r.Window.String(), Rows: []AuthzRow{}}
	for _, row := range rows {
		row.AllowedRPS, row.DeniedRPS = row.Allowed/r.Window.Seconds(), row.Denied/r.Window.Seconds()
		out.Rows = append(out.Rows, *row)
	}
	sort.Slice(out.Rows, func(i, j int) bool {
		a, b := out.Rows[i], out.Rows[j]
		for _, p := range [][2]string{{a.Protocol, b.Protocol}, {a.Server, b.Server}, {a.Route, b.Route}, {a.Authorization, b.Authorization}} {
			if p[0] != p[1] {
				return p[0] < p[1]
			}
		}
		return false
	})
	return out, nil
}

// Authz calls GET /api/v1/authz.
func (c *Client) Authz(ctx context.Context, r AuthzRequest) (*AuthzResponse, error) {
	var out AuthzResponse
	return &out, c.get(ctx, PathAuthz, r.Query(), &out)
}
