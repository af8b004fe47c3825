package metricsapi

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/compat"
)

// Service computes the API's answers from Prometheus and a Lister.
type Service struct {
	Prom   Querier
	Lister Lister
	// Kube, when set, also serves Prometheus HTTP service discovery of the
	// cluster's pods (PathPrometheusSD).
	Kube kubernetes.Interface
	Now  func() time.Time // default time.Now
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// plan is how one stat request maps onto series: the matchers and the
// labels that name a row's namespace and resource.
type plan struct {
	sel             selector
	nsLabel         string
	nameLabel       string
	tcpPeer         string // "src" for inbound series, "dst" for outbound
	onlyWithTraffic bool   // --from/--to: rows are the resources traffic went to/from
}

func (p plan) by() string {
	if p.nsLabel == p.nameLabel {
		return p.nsLabel
	}
	return p.nsLabel + ", " + p.nameLabel
}

func planStat(r *StatRequest) (plan, error) {
	if r.Window <= 0 {
		r.Window = DefaultWindow
	}
	if r.FromName != "" && r.ToName != "" {
		return plan{}, &BadRequestError{Msg: "--from and --to cannot be used together"}
	}
	ns := r.Namespace
	if r.AllNamespaces {
		ns = ""
	} else if ns == "" && r.Kind != KindNamespace {
		return plan{}, &BadRequestError{Msg: fmt.Sprintf("a namespace is needed for %s (or all namespaces)", r.Kind)}
	}
	switch {
	case r.ToName != "" || r.ToKind != "":
		if r.Kind == KindService {
			return plan{}, &BadRequestError{Msg: "--to needs a workload as the source: a service sends no traffic"}
		}
		tk, err := ParseKind(r.ToKind)
		if err != nil {
			return plan{}, fmt.Errorf("--to: %w", err)
		}
		if r.ToName == "" {
			return plan{}, &BadRequestError{Msg: "--to needs a resource name (kind/name)"}
		}
		toNS := r.ToNamespace
		if toNS == "" {
			toNS = r.Namespace
		}
		sel := selector{compat.LabelDirection: compat.Outbound, tk.dstLabel(): r.ToName}
		if tk != KindNamespace {
			sel["dst_namespace"] = toNS
		}
		addSelf(sel, r.Kind, ns, r.Name)
		return plan{sel: sel, nsLabel: "namespace", nameLabel: r.Kind.label(), tcpPeer: "dst", onlyWithTraffic: true}, nil
	case r.FromName != "" || r.FromKind != "":
		fk, err := ParseKind(r.FromKind)
		if err != nil {
			return plan{}, fmt.Errorf("--from: %w", err)
		}
		if fk == KindService {
			return plan{}, &BadRequestError{Msg: "--from cannot be a service: a service sends no traffic"}
		}
		if r.FromName == "" {
			return plan{}, &BadRequestError{Msg: "--from needs a resource name (kind/name)"}
		}
		fromNS := r.FromNamespace
		if fromNS == "" {
			fromNS = r.Namespace
		}
		sel := selector{compat.LabelDirection: compat.Outbound}
		addSelf(sel, fk, fromNS, r.FromName)
		if ns != "" && r.Kind != KindNamespace {
			sel["dst_namespace"] = ns
		}
		if r.Name != "" {
			sel[r.Kind.dstLabel()] = r.Name
		}
		return plan{sel: sel, nsLabel: "dst_namespace", nameLabel: r.Kind.dstLabel(), tcpPeer: "dst", onlyWithTraffic: true}, nil
	case r.Kind == KindService:
		sel := selector{compat.LabelDirection: compat.Outbound}
		if ns != "" {
			sel["dst_namespace"] = ns
		}
		if r.Name != "" {
			sel["dst_service"] = r.Name
		}
		return plan{sel: sel, nsLabel: "dst_namespace", nameLabel: "dst_service", tcpPeer: "dst"}, nil
	}
	sel := selector{compat.LabelDirection: compat.Inbound}
	addSelf(sel, r.Kind, ns, r.Name)
	return plan{sel: sel, nsLabel: "namespace", nameLabel: r.Kind.label(), tcpPeer: "src"}, nil
}

// addSelf adds the matchers of a proxy's own resource.
func addSelf(sel selector, k Kind, ns, name string) {
	if k == KindNamespace {
		if name != "" {
			sel["namespace"] = name
		}
		return
	}
	if ns != "" {
		sel["namespace"] = ns
	}
	if name != "" {
		sel[k.label()] = name
	}
}

type rowKey struct{ ns, name string }

// Stat answers a stat request.
func (s *Service) Stat(ctx context.Context, r StatRequest) (*StatResponse, error) {
	p, err := planStat(&r)
	if err != nil {
		return nil, err
	}
	w := promDuration(r.Window)
	at := s.now()
	key := func(m model.Metric) rowKey {
		if r.Kind == KindNamespace {
			return rowKey{"", string(m[model.LabelName(p.nameLabel)])}
		}
		return rowKey{string(m[model.LabelName(p.nsLabel)]), string(m[model.LabelName(p.nameLabel)])}
	}
	type acc struct {
		req, ok, secured float64
		p50, p95, p99    *float64
		tcp              *float64
	}
	accs := map[rowKey]*acc{}
	get := func(k rowKey) *acc {
		a := accs[k]
		if a == nil {
			a = &acc{}
			accs[k] = a
		}
		return a
	}
	queries := map[string]func(model.Vector){
		fmt.Sprintf("sum(increase(%s%s[%s])) by (%s, %s, %s)", compat.MetricResponseTotal, p.sel, w, p.by(), compat.LabelClassification, compat.LabelTLS): func(v model.Vector) {
			for _, smp := range v {
				a := get(key(smp.Metric))
				f := float64(smp.Value)
				a.req += f
				if smp.Metric[compat.LabelClassification] == "success" {
					a.ok += f
				}
				if smp.Metric[compat.LabelTLS] == compat.TLSTrue {
					a.secured += f
				}
			}
		},
		fmt.Sprintf("sum(%s%s) by (%s)", compat.MetricTCPOpenConnections, p.sel.with(compat.LabelPeer, p.tcpPeer), p.by()): func(v model.Vector) {
			for _, smp := range v {
				get(key(smp.Metric)).tcp = value(smp)
			}
		},
	}
	for _, q := range []struct {
		q   float64
		set func(*acc, *float64)
	}{{0.5, func(a *acc, f *float64) { a.p50 = f }}, {0.95, func(a *acc, f *float64) { a.p95 = f }}, {0.99, func(a *acc, f *float64) { a.p99 = f }}} {
		queries[fmt.Sprintf("histogram_quantile(%g, sum(rate(%s_bucket%s[%s])) by (le, %s))", q.q, compat.MetricResponseLatencyMs, p.sel, w, p.by())] = func(v model.Vector) {
			for _, smp := range v {
				q.set(get(key(smp.Metric)), value(smp))
			}
		}
	}
	results := make(map[string]model.Vector, len(queries))
	var resources []Resource
	g, gctx := errgroup.WithContext(ctx)
	resCh := make(chan struct {
		q string
		v model.Vector
	}, len(queries))
	for q := range queries {
		g.Go(func() error {
			v, err := s.Prom.Query(gctx, q, at)
			if err != nil {
				return err
			}
			resCh <- struct {
				q string
				v model.Vector
			}{q, v}
			return nil
		})
	}
	g.Go(func() error {
		ns := r.Namespace
		if r.AllNamespaces || r.Kind == KindNamespace {
			ns = ""
		}
		var err error
		resources, err = s.Lister.List(gctx, r.Kind, ns, r.Name)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	close(resCh)
	for res := range resCh {
		results[res.q] = res.v
	}
	for q, apply := range queries {
		apply(results[q])
	}
	if r.Name != "" {
		if err := namedResourceProblem(r, resources); err != nil {
			return nil, err
		}
	}
	rows := map[rowKey]*StatRow{}
	for _, res := range resources {
		rows[rowKey{res.Namespace, res.Name}] = &StatRow{Namespace: res.Namespace, Kind: r.Kind, Name: res.Name, MeshedPods: res.MeshedPods, TotalPods: res.TotalPods}
	}
	for k, a := range accs {
		if k.name == "" {
			continue // series of pods that are not of this kind
		}
		row := rows[k]
		if row == nil {
			if s.Lister.Authoritative() {
				continue // not (or no longer) a resource of this kind
			}
			row = &StatRow{Namespace: k.ns, Kind: r.Kind, Name: k.name, MeshedPods: -1, TotalPods: -1}
			rows[k] = row
		}
		row.Requests, row.Successes, row.SecuredRequests = a.req, a.ok, a.secured
		if a.req > 0 {
			sr, rps := a.ok/a.req, a.req/r.Window.Seconds()
			row.SuccessRate, row.RPS = &sr, &rps
		}
		row.LatencyP50Ms, row.LatencyP95Ms, row.LatencyP99Ms, row.TCPConnections = a.p50, a.p95, a.p99, a.tcp
	}
	out := &StatResponse{Window: r.Window.String(), Rows: []StatRow{}}
	for _, row := range rows {
		if p.onlyWithTraffic && row.Requests == 0 && row.TCPConnections == nil {
			continue
		}
		out.Rows = append(out.Rows, *row)
	}
	sort.Slice(out.Rows, func(i, j int) bool {
		a, b := out.Rows[i], out.Rows[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out, nil
}

// namedResourceProblem says why a named resource cannot have metrics:
// it does not exist, or none of its pods is meshed.
func namedResourceProblem(r StatRequest, resources []Resource) error {
	for _, res := range resources {
		if res.Name != r.Name {
			continue
		}
		if r.Kind.hasPods() && res.MeshedPods == 0 {
			detail := fmt.Sprintf("none of its %d running pods has a %s container", res.TotalPods, compat.ProxyContainerName)
			if res.TotalPods == 0 {
				detail = "it has no running pods"
			}
			return &NotMeshedError{Kind: r.Kind, Namespace: res.Namespace, Name: r.Name, Detail: detail}
		}
		return nil
	}
	return nil
}
