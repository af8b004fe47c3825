// Package httproute compiles a Service's outbound routing table
// (internal/route) into an immutable matcher the proxy consults per
// request: regular expressions compiled once, matches ordered by the
// Gateway API's precedence, weighted backends prepared for picking, and
// each rule's effective timeouts and retry policy resolved against the
// route's and the Service's defaults. It also implements the filters that
// are pure functions of a request (header modifiers, redirect locations,
// URL rewrites).
package httproute

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"

	"github.com/weftmesh/weft/internal/route"
)

// maxRegexLen bounds a pattern the proxy compiles; the control plane
// rejects longer ones, this is the proxy's own guard.
const maxRegexLen = 4096

// Table is a compiled route.Table. Immutable; safe for concurrent use.
type Table struct {
	Source *route.Table
	// Default is the rule of requests no route matches: the parent
	// Service itself, with the Service's policy.
	Default *Rule
	http    []entry
	grpc    []entry
}

// Kind tells HTTPRoute rules from GRPCRoute rules.
type Kind uint8

// Rule kinds.
const (
	KindDefault Kind = iota // no route matched
	KindHTTP
	KindGRPC
)

// Rule is one compiled route rule.
type Rule struct {
	Kind Kind
	Meta route.Meta // zero for the default rule
	// Filters are the rule's filters in order.
	Filters []route.Filter
	// Backends with a weight above zero; empty with Unweighted false:
	// the parent Service. Unweighted is set when every backend has
	// weight 0: the Gateway API answers 500.
	Backends   []route.Backend
	Unweighted bool
	cumulative []uint64
	total      uint64
	// Timeouts and Retry are effective: the rule's own, else the route's
	// annotations, else the Service's.
	Timeouts route.Timeouts
	Retry    *route.Retry
}

// PickBackend chooses a backend by weight; ok is false when the rule
// forwards to the parent Service (no backends) or has no weighted ones.
func (r *Rule) PickBackend() (route.Backend, bool) {
	if r.total == 0 {
		return route.Backend{}, false
	}
	if len(r.Backends) == 1 {
		return r.Backends[0], true
	}
	n := rand.Uint64N(r.total)
	i, _ := slices.BinarySearch(r.cumulative, n+1)
	return r.Backends[i], true
}

// entry is one match of one rule, with its precedence key.
type entry struct {
	rule      *Rule
	hostnames []string // empty: any
	path      pathMatcher
	method    string
	headers   []valueMatcher
	query     []valueMatcher
	grpcSvc   stringMatcher
	grpcMeth  stringMatcher
	// precedence, compared in order
	pathRank  int // 0 exact, 1 prefix, 2 regex, 3 none
	pathLen   int
	ruleN     int
	matchIdx  int
	routeRank int // position of the route after sorting by age and name
}

// Compile builds the matcher of t. It fails on an invalid regular
// expression (the control plane validates them; a table that fails here
// is not applied and the previous one stays in use).
func Compile(t *route.Table) (*Table, error) {
	if t == nil {
		return nil, fmt.Errorf("httproute: nil table")
	}
	ct := &Table{Source: t}
	ct.Default = &Rule{Kind: KindDefault, Timeouts: t.Defaults.Timeouts, Retry: t.Defaults.Retry}

	httpOrder := make([]int, len(t.HTTP))
	for i := range httpOrder {
		httpOrder[i] = i
	}
	slices.SortStableFunc(httpOrder, func(a, b int) int { return compareMeta(t.HTTP[a].Meta, t.HTTP[b].Meta) })
	for rank, i := range httpOrder {
		hr := &t.HTTP[i]
		for ri, rr := range hr.Rules {
			rule := newRule(KindHTTP, hr.Meta, rr.Filters, rr.Backends, rr.Timeouts, rr.Retry, hr.Policy, t.Defaults)
			matches := rr.Matches
			if len(matches) == 0 {
				matches = []route.HTTPMatch{{}}
			}
			for mi, m := range matches {
				e, err := compileHTTPMatch(m)
				if err != nil {
					return nil, fmt.Errorf("HTTPRoute %s/%s rule %d: %w", hr.Meta.Namespace, hr.Meta.Name, ri, err)
				}
				e.rule, e.hostnames = rule, lower(hr.Hostnames)
				e.routeRank, e.ruleN, e.matchIdx = rank, ri, mi
				ct.http = append(ct.http, e)
			}
		}
	}
	grpcOrder := make([]int, len(t.GRPC))
	for i := range grpcOrder {
		grpcOrder[i] = i
	}
	slices.SortStableFunc(grpcOrder, func(a, b int) int { return compareMeta(t.GRPC[a].Meta, t.GRPC[b].Meta) })
	for rank, i := range grpcOrder {
		gr := &t.GRPC[i]
		for ri, rr := range gr.Rules {
			rule := newRule(KindGRPC, gr.Meta, rr.Filters, rr.Backends, rr.Timeouts, rr.Retry, gr.Policy, t.Defaults)
			matches := rr.Matches
			if len(matches) == 0 {
				matches = []route.GRPCMatch{{}}
			}
			for mi, m := range matches {
				e, err := compileGRPCMatch(m)
				if err != nil {
					return nil, fmt.Errorf("GRPCRoute %s/%s rule %d: %w", gr.Meta.Namespace, gr.Meta.Name, ri, err)
				}
				e.rule, e.hostnames = rule, lower(gr.Hostnames)
				e.routeRank, e.ruleN, e.matchIdx = rank, ri, mi
				ct.grpc = append(ct.grpc, e)
			}
		}
	}
	slices.SortStableFunc(ct.http, compareHTTP)
	slices.SortStableFunc(ct.grpc, compareGRPC)
	return ct, nil
}

func newRule(kind Kind, meta route.Meta, filters []route.Filter, backends []route.Backend,
	timeouts route.Timeouts, retry *route.Retry, routePolicy, defaults route.Policy) *Rule {
	r := &Rule{Kind: kind, Meta: meta, Filters: filters}
	for _, b := range backends {
		if b.Weight == 0 {
			continue
		}
		r.total += uint64(b.Weight)
		r.Backends = append(r.Backends, b)
		r.cumulative = append(r.cumulative, r.total)
	}
	r.Unweighted = len(backends) > 0 && r.total == 0
	r.Timeouts = mergeTimeouts(timeouts, routePolicy.Timeouts, defaults.Timeouts)
	r.Retry = cmp.Or(retry, routePolicy.Retry, defaults.Retry)
	return r
}

func mergeTimeouts(ts ...route.Timeouts) route.Timeouts {
	var out route.Timeouts
	for _, t := range ts {
		out.Request = cmp.Or(out.Request, t.Request)
		out.Backend = cmp.Or(out.Backend, t.Backend)
		out.Idle = cmp.Or(out.Idle, t.Idle)
	}
	return out
}

// compareMeta orders routes of equal precedence: oldest first, then by
// namespace/name.
func compareMeta(a, b route.Meta) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		if a.Created.IsZero() {
			return 1
		}
		if b.Created.IsZero() {
			return -1
		}
		return c
	}
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// compareHTTP is the Gateway API's HTTPRoute precedence: hostname
// specificity, then exact path, longest prefix, regex; then method
// matches, most header matches, most query matches; then route age and
// name, rule order, match order.
func compareHTTP(a, b entry) int {
	return cmp.Or(
		-cmp.Compare(hostRank(a.hostnames), hostRank(b.hostnames)),
		cmp.Compare(a.pathRank, b.pathRank),
		-cmp.Compare(a.pathLen, b.pathLen),
		-cmp.Compare(boolInt(a.method != ""), boolInt(b.method != "")),
		-cmp.Compare(len(a.headers), len(b.headers)),
		-cmp.Compare(len(a.query), len(b.query)),
		cmp.Compare(a.routeRank, b.routeRank),
		cmp.Compare(a.ruleN, b.ruleN),
		cmp.Compare(a.matchIdx, b.matchIdx),
	)
}

// compareGRPC is the GRPCRoute precedence: hostname specificity, then the
// longest service match, the longest method match, most header matches;
// then route age and name, rule order.
func compareGRPC(a, b entry) int {
	return cmp.Or(
		-cmp.Compare(hostRank(a.hostnames), hostRank(b.hostnames)),
		-cmp.Compare(len(a.grpcSvc.value), len(b.grpcSvc.value)),
		-cmp.Compare(len(a.grpcMeth.value), len(b.grpcMeth.value)),
		-cmp.Compare(len(a.headers), len(b.headers)),
		cmp.Compare(a.routeRank, b.routeRank),
		cmp.Compare(a.ruleN, b.ruleN),
		cmp.Compare(a.matchIdx, b.matchIdx),
	)
}

// hostRank is a route's hostname specificity: its most specific hostname
// (exact names beat wildcards, longer beats shorter); 0 for no hostnames.
func hostRank(hs []string) int {
	best := 0
	for _, h := range hs {
		r := 2 * len(h)
		if !strings.HasPrefix(h, "*.") {
			r++
		}
		best = max(best, r)
	}
	return best
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func lower(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

func compileRegex(pattern string) (*regexp.Regexp, error) {
	if len(pattern) > maxRegexLen {
		return nil, fmt.Errorf("regular expression of %d bytes exceeds %d", len(pattern), maxRegexLen)
	}
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", pattern, err)
	}
	return re, nil
}
