package metricsapi

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/weftmesh/weft/internal/compat"
)

// Edges answers an edges request: outbound traffic between resources of
// the kind (src → dst, with the server identity the source verified),
// joined with the client identities the destinations' proxies saw.
// Inbound traffic from clients without a matching outbound series (for
// example unmeshed-but-identified clients) appears with the client
// identity's service account as its source.
func (s *Service) Edges(ctx context.Context, r EdgeRequest) (*EdgesResponse, error) {
	if r.Window <= 0 {
		r.Window = DefaultWindow
	}
	if r.Kind == KindService {
		return nil, &BadRequestError{Msg: "edges are between workloads: services have no proxy of their own"}
	}
	if !r.AllNamespaces && r.Namespace == "" && r.Kind != KindNamespace {
		return nil, &BadRequestError{Msg: fmt.Sprintf("a namespace is needed for %s edges (or all namespaces)", r.Kind)}
	}
	w, at := promDuration(r.Window), s.now()
	self, dst := r.Kind.label(), r.Kind.dstLabel()
	outBy := fmt.Sprintf("namespace, %s, dst_namespace, %s, tls, server_id, no_tls_reason", self, dst)
	inBy := fmt.Sprintf("namespace, %s, tls, client_id", self)
	if r.Kind == KindNamespace {
		outBy, inBy = "namespace, dst_namespace, tls, server_id, no_tls_reason", "namespace, tls, client_id"
	}
	// HTTP traffic counts in response_total, opaque TCP in tcp_open_total.
	var queries []string
	for _, metric := range []string{compat.MetricResponseTotal, compat.MetricTCPOpenTotal} {
		queries = append(queries,
			fmt.Sprintf(`sum(increase(%s{direction="outbound"}[%s])) by (%s)`, metric, w, outBy),
			fmt.Sprintf(`sum(increase(%s{direction="inbound"}[%s])) by (%s)`, metric, w, inBy))
	}
	results := make([]model.Vector, len(queries))
	g, gctx := errgroup.WithContext(ctx)
	for i, q := range queries {
		g.Go(func() (err error) { results[i], err = s.Prom.Query(gctx, q, at); return })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := append(results[0], results[2]...)
	in := append(results[1], results[3]...)
	name := func(m model.Metric, label string) string { return string(m[model.LabelName(label)]) }
	// clients: destination → client identities seen on its inbound side.
	clients := map[Endpoint][]string{}
	for _, smp := range in {
		id := name(smp.Metric, compat.LabelClientID)
		if smp.Value <= 0 || id == "" {
			continue
		}
		e := Endpoint{Namespace: name(smp.Metric, "namespace"), Kind: r.Kind, Name: name(smp.Metric, self)}
		if e.Name == "" {
			continue
		}
		if !slices.Contains(clients[e], id) {
			clients[e] = append(clients[e], id)
		}
	}
	seen := map[[2]Endpoint]*Edge{}
	used := map[Endpoint]map[string]bool{}
	for _, smp := range out {
		if smp.Value <= 0 {
			continue
		}
		e := Edge{
			Src:         Endpoint{Namespace: name(smp.Metric, "namespace"), Kind: r.Kind, Name: name(smp.Metric, self)},
			Dst:         Endpoint{Namespace: name(smp.Metric, "dst_namespace"), Kind: r.Kind, Name: name(smp.Metric, dst)},
			ServerID:    name(smp.Metric, compat.LabelServerID),
			Secured:     name(smp.Metric, compat.LabelTLS) == compat.TLSTrue,
			NoTLSReason: name(smp.Metric, compat.LabelNoTLSReason),
		}
		if e.Src.Name == "" || e.Dst.Name == "" {
			continue
		}
		k := [2]Endpoint{e.Src, e.Dst}
		if prev := seen[k]; prev != nil {
			if e.Secured && !prev.Secured { // report the secured series, if any
				*prev = e
			}
			continue
		}
		e.ClientID = matchClient(e.Src, clients[e.Dst])
		if e.ClientID != "" {
			if used[e.Dst] == nil {
				used[e.Dst] = map[string]bool{}
			}
			used[e.Dst][e.ClientID] = true
		}
		cp := e
		seen[k] = &cp
	}
	for dstEp, ids := range clients {
		for _, id := range ids {
			if used[dstEp][id] {
				continue
			}
			sa, ns := identityParts(id)
			if sa == "" {
				continue
			}
			src := Endpoint{Namespace: ns, Kind: "serviceaccount", Name: sa}
			k := [2]Endpoint{src, dstEp}
			if seen[k] == nil {
				seen[k] = &Edge{Src: src, Dst: dstEp, ClientID: id, Secured: true}
			}
		}
	}
	resp := &EdgesResponse{Window: r.Window.String(), Edges: []Edge{}}
	for _, e := range seen {
		if r.Kind == KindNamespace {
			e.Src.Namespace, e.Dst.Namespace = "", ""
		}
		if !r.AllNamespaces && r.Kind != KindNamespace && e.Src.Namespace != r.Namespace && e.Dst.Namespace != r.Namespace {
			continue
		}
		resp.Edges = append(resp.Edges, *e)
	}
	sort.Slice(resp.Edges, func(i, j int) bool {
		a, b := resp.Edges[i], resp.Edges[j]
		if a.Src != b.Src {
			return a.Src.Namespace+"/"+a.Src.Name < b.Src.Namespace+"/"+b.Src.Name
		}
		return a.Dst.Namespace+"/"+a.Dst.Name < b.Dst.Namespace+"/"+b.Dst.Name
	})
	return resp, nil
}

// identityParts splits a proxy identity
// (<sa>.<ns>.serviceaccount.identity.<control-ns>.<trust-domain>) into its
// service account and namespace; "" when it is not of that form.
func identityParts(id string) (sa, ns string) {
	parts := strings.SplitN(id, ".", 4)
	if len(parts) < 4 || parts[2] != "serviceaccount" {
		return "", ""
	}
	return parts[0], parts[1]
}

// matchClient picks, among the client identities a destination saw, the
// one of src: the only one from src's namespace, else the one whose
// service account is named as src (the usual convention); "" when it
// cannot tell.
func matchClient(src Endpoint, ids []string) string {
	var sameNS []string
	for _, id := range ids {
		sa, ns := identityParts(id)
		if ns != src.Namespace && src.Kind != KindNamespace {
			continue
		}
		if src.Kind == KindNamespace && ns != src.Name {
			continue
		}
		sameNS = append(sameNS, id)
		if sa == src.Name {
			return id
		}
	}
	if len(sameNS) == 1 {
		return sameNS[0]
	}
	return ""
}
