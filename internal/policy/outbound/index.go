// Package outbound is the policy controller's outbound index: it holds the
// Services and the HTTPRoutes/GRPCRoutes attached to them (as a kube
// adapter feeds them), validates and translates each route once, builds
// each watched Service port's route.Table on demand, pushes a new table to
// its watchers when it changes, and says which status each route should
// have. The OutboundPolicies gRPC server streams the tables.
//
// A route that fails validation is left out of every table whole (never
// half-applied) and reported in its status; the rest of the table stays.
package outbound

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/route"
)

// Service is what the index needs of a Kubernetes Service.
type Service struct {
	Namespace, Name string
	ClusterIPs      []string
	Ports           []uint16
	Annotations     map[string]string
}

type svcEntry struct {
	svc      Service
	defaults route.Policy
	accrual  *route.FailureAccrual
}

type routeEntry struct {
	obj *Route
	tr  *translated
}

// WatchKey is what a watcher asks for: a target and the caller's
// namespace (consumer routes apply to their namespace only).
type WatchKey struct {
	Target   string
	ClientNS string
}

type watchState struct {
	table *route.Table
	subs  map[chan struct{}]struct{}
}

// Index holds the outbound state. Safe for concurrent use.
type Index struct {
	domain string
	log    *slog.Logger

	mu       sync.Mutex
	services map[string]*svcEntry       // ns/name
	byIP     map[string]string          // cluster IP → ns/name
	routes   map[string]*routeEntry     // Route.Key()
	byParent map[string]map[string]bool // parent ns/name → route keys
	byRef    map[string]map[string]bool // any referenced ns/name (parent or backend) → route keys
	watches  map[WatchKey]*watchState
	changed  chan struct{}
	// What changed since Run last published: tables of these parents
	// (ns/name), or of every watched key (a Service change may make a
	// target resolve differently).
	dirty    map[string]bool
	dirtyAll bool
	onStatus func(routeKeys []string) // routes whose status may have changed
}

// NewIndex returns an empty index for a cluster domain.
func NewIndex(domain string, log *slog.Logger) *Index {
	return &Index{domain: strings.TrimSuffix(domain, "."), log: log, services: map[string]*svcEntry{}, byIP: map[string]string{},
		routes: map[string]*routeEntry{}, byParent: map[string]map[string]bool{}, byRef: map[string]map[string]bool{},
		watches: map[WatchKey]*watchState{}, changed: make(chan struct{}, 1), dirty: map[string]bool{}}
}

// OnStatus sets the function told which routes' status may have changed
// (the status writer). Call before feeding the index.
func (ix *Index) OnStatus(f func(routeKeys []string)) { ix.onStatus = f }

func nsName(ns, name string) string { return ns + "/" + name }

func (ix *Index) poke() {
	select {
	case ix.changed <- struct{}{}:
	default:
	}
}

// affected returns the routes referencing ns/name; ix.mu is held.
func (ix *Index) affected(key string) []string {
	var out []string
	for k := range ix.byRef[key] {
		out = append(out, k)
	}
	return out
}

func (ix *Index) tellStatus(keys []string) {
	if ix.onStatus != nil && len(keys) > 0 {
		ix.onStatus(keys)
	}
}

// SetService adds or replaces a Service.
func (ix *Index) SetService(s Service) {
	e := &svcEntry{svc: s}
	var errs []error
	e.defaults, errs = parsePolicy(s.Annotations, true, true)
	var aerrs []error
	e.accrual, aerrs = parseAccrual(s.Annotations)
	for _, err := range append(errs, aerrs...) {
		ix.log.Warn("ignoring a Service annotation", "service", nsName(s.Namespace, s.Name), "err", err)
	}
	key := nsName(s.Namespace, s.Name)
	ix.mu.Lock()
	if old, ok := ix.services[key]; ok {
		for _, ip := range old.svc.ClusterIPs {
			delete(ix.byIP, ip)
		}
	}
	ix.services[key] = e
	for _, ip := range s.ClusterIPs {
		if ip != "" && ip != "None" {
			ix.byIP[ip] = key
		}
	}
	keys := ix.affected(key)
	ix.dirtyAll = true
	ix.mu.Unlock()
	ix.poke()
	ix.tellStatus(keys)
}

// DeleteService removes a Service.
func (ix *Index) DeleteService(ns, name string) {
	key := nsName(ns, name)
	ix.mu.Lock()
	if old, ok := ix.services[key]; ok {
		for _, ip := range old.svc.ClusterIPs {
			if ix.byIP[ip] == key {
				delete(ix.byIP, ip)
			}
		}
	}
	delete(ix.services, key)
	keys := ix.affected(key)
	ix.dirtyAll = true
	ix.mu.Unlock()
	ix.poke()
	ix.tellStatus(keys)
}

func addTo(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

func removeFrom(m map[string]map[string]bool, k, v string) {
	delete(m[k], v)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// unlink removes a route's index entries; ix.mu is held.
func (ix *Index) unlink(key string) {
	e, ok := ix.routes[key]
	if !ok {
		return
	}
	for _, p := range e.tr.parents {
		removeFrom(ix.byParent, nsName(p.Namespace, p.Name), key)
		removeFrom(ix.byRef, nsName(p.Namespace, p.Name), key)
	}
	for _, b := range e.tr.backends {
		removeFrom(ix.byRef, nsName(b.Namespace, b.Name), key)
	}
	delete(ix.routes, key)
}

// SetRoute adds or replaces a route (validated and translated here, once).
// An update that changes only the status (the status writer's own) keeps
// the translation and changes no table.
func (ix *Index) SetRoute(r *Route) {
	key := r.Key()
	ix.mu.Lock()
	if old, ok := ix.routes[key]; ok && old.obj.Generation == r.Generation && r.Generation != 0 &&
		old.obj.Created.Equal(r.Created) && reflect.DeepEqual(old.obj.Annotations, r.Annotations) {
		old.obj = r
		ix.mu.Unlock()
		return
	}
	ix.mu.Unlock()
	tr := translate(r, ix.domain)
	ix.mu.Lock()
	if old, ok := ix.routes[key]; ok {
		ix.markParents(old.tr)
	}
	ix.markParents(tr)
	ix.unlink(key)
	// A route without Service parents is kept only while our old status
	// entries on it need clearing (Status then returns none of ours).
	if len(tr.parents) > 0 || hasOurStatus(r) {
		ix.routes[key] = &routeEntry{obj: r, tr: tr}
		for _, p := range tr.parents {
			addTo(ix.byParent, nsName(p.Namespace, p.Name), key)
			addTo(ix.byRef, nsName(p.Namespace, p.Name), key)
		}
		for _, b := range tr.backends {
			addTo(ix.byRef, nsName(b.Namespace, b.Name), key)
		}
	}
	// Routes sharing a parent may see their conflicts change.
	keys := []string{key}
	for _, p := range tr.parents {
		for k := range ix.byParent[nsName(p.Namespace, p.Name)] {
			if k != key {
				keys = append(keys, k)
			}
		}
	}
	ix.mu.Unlock()
	if tr.invalid != nil {
		ix.log.Info("route not applied", "route", key, "err", tr.invalid)
	}
	ix.poke()
	ix.tellStatus(keys)
}

// DeleteRoute removes a route.
func (ix *Index) DeleteRoute(group, kind, ns, name string) {
	key := (&Route{Group: group, Kind: kind, Namespace: ns, Name: name}).Key()
	ix.mu.Lock()
	var keys []string
	if e, ok := ix.routes[key]; ok {
		for _, p := range e.tr.parents {
			for k := range ix.byParent[nsName(p.Namespace, p.Name)] {
				if k != key {
					keys = append(keys, k)
				}
			}
		}
	}
	if e, ok := ix.routes[key]; ok {
		ix.markParents(e.tr)
	}
	ix.unlink(key)
	ix.mu.Unlock()
	ix.poke()
	ix.tellStatus(keys)
}

func hasOurStatus(r *Route) bool {
	for _, ps := range r.Status {
		if ps.ControllerName == compat.PolicyControllerName {
			return true
		}
	}
	return false
}

// markParents marks the tables of a route's parents dirty; ix.mu is held.
func (ix *Index) markParents(tr *translated) {
	for _, p := range tr.parents {
		ix.dirty[nsName(p.Namespace, p.Name)] = true
	}
}

// resolve finds the Service port a target names; ix.mu is held.
func (ix *Index) resolve(target string) (*svcEntry, uint16, bool) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, 0, false
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || p == 0 {
		return nil, 0, false
	}
	port := uint16(p)
	var key string
	if ip := net.ParseIP(host); ip != nil {
		key = ix.byIP[ip.String()]
	} else {
		host = strings.TrimSuffix(host, ".")
		suffix := ".svc." + ix.domain
		rest, ok := strings.CutSuffix(host, suffix)
		if !ok {
			return nil, 0, false
		}
		name, ns, ok := strings.Cut(rest, ".")
		if !ok || strings.Contains(ns, ".") {
			return nil, 0, false
		}
		key = nsName(ns, name)
	}
	e, ok := ix.services[key]
	if !ok {
		return nil, 0, false
	}
	for _, sp := range e.svc.Ports {
		if sp == port {
			return e, port, true
		}
	}
	return nil, 0, false
}

// Table builds the current table of k: nil when the target is not a
// known Service port.
func (ix *Index) Table(k WatchKey) *route.Table {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.table(k)
}

// table is Table with ix.mu held.
func (ix *Index) table(k WatchKey) *route.Table {
	e, port, ok := ix.resolve(k.Target)
	if !ok {
		return nil
	}
	s := e.svc
	t := &route.Table{
		Parent:   route.Parent{Namespace: s.Namespace, Name: s.Name, Port: port, Authority: fmt.Sprintf("%s.%s.svc.%s:%d", s.Name, s.Namespace, ix.domain, port)},
		Defaults: e.defaults,
		Accrual:  e.accrual,
	}
	// Producer routes live in the Service's namespace; consumer routes in
	// the caller's, and replace the producer routes for that caller.
	var producer, consumer []*routeEntry
	for key := range ix.byParent[nsName(s.Namespace, s.Name)] {
		re := ix.routes[key]
		if re.tr.invalid != nil || !attaches(re.tr, s.Namespace, s.Name, port) {
			continue
		}
		switch re.obj.Namespace {
		case s.Namespace:
			producer = append(producer, re)
		case k.ClientNS:
			consumer = append(consumer, re)
		}
	}
	use := producer
	if len(consumer) > 0 {
		use = consumer
	}
	sort.Slice(use, func(i, j int) bool { return olderFirst(use[i].obj, use[j].obj) })
	for _, re := range use {
		if re.tr.http != nil {
			t.HTTP = append(t.HTTP, ix.resolvedHTTP(re.tr.http))
		}
		if re.tr.grpc != nil {
			t.GRPC = append(t.GRPC, ix.resolvedGRPC(re.tr.grpc))
		}
	}
	return t
}

// unresolved reports backends whose Service does not exist: the proxy is
// sent them without an authority, and answers 500 for requests picked for
// them, as the Gateway API asks; ix.mu is held.
func (ix *Index) unresolved(bs []route.Backend) ([]route.Backend, bool) {
	var out []route.Backend
	for i, b := range bs {
		if b.Authority == "" || ix.services[nsName(b.Namespace, b.Name)] != nil {
			continue
		}
		if out == nil {
			out = append([]route.Backend(nil), bs...)
		}
		out[i].Authority = ""
	}
	return out, out != nil
}

// resolvedHTTP is r with missing backends blanked (copied only then).
func (ix *Index) resolvedHTTP(r *route.HTTPRoute) route.HTTPRoute {
	c := *r
	copied := false
	for i, rule := range r.Rules {
		if bs, ok := ix.unresolved(rule.Backends); ok {
			if !copied {
				c.Rules, copied = append([]route.HTTPRule(nil), r.Rules...), true
			}
			c.Rules[i].Backends = bs
		}
	}
	return c
}

// resolvedGRPC is resolvedHTTP for a GRPCRoute.
func (ix *Index) resolvedGRPC(r *route.GRPCRoute) route.GRPCRoute {
	c := *r
	copied := false
	for i, rule := range r.Rules {
		if bs, ok := ix.unresolved(rule.Backends); ok {
			if !copied {
				c.Rules, copied = append([]route.GRPCRule(nil), r.Rules...), true
			}
			c.Rules[i].Backends = bs
		}
	}
	return c
}

func olderFirst(a, b *Route) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.Key() < b.Key()
}

func attaches(tr *translated, ns, name string, port uint16) bool {
	for _, p := range tr.parents {
		if p.Namespace == ns && p.Name == name && (p.Port == 0 || p.Port == port) {
			return true
		}
	}
	return false
}

// Watch subscribes to k: the returned channel receives a signal (never
// blocking, coalesced) whenever k's table changes; read it with Current.
// cancel ends the subscription.
func (ix *Index) Watch(k WatchKey) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	ix.mu.Lock()
	ws, ok := ix.watches[k]
	if !ok {
		ws = &watchState{table: ix.table(k), subs: map[chan struct{}]struct{}{}}
		ix.watches[k] = ws
	}
	ws.subs[ch] = struct{}{}
	ix.mu.Unlock()
	return ch, func() {
		ix.mu.Lock()
		delete(ws.subs, ch)
		if len(ws.subs) == 0 && ix.watches[k] == ws {
			delete(ix.watches, k)
		}
		ix.mu.Unlock()
	}
}

// Current is the table last published for a watched key.
func (ix *Index) Current(k WatchKey) *route.Table {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ws, ok := ix.watches[k]; ok {
		return ws.table
	}
	return ix.table(k)
}

// Run publishes changed tables to their watchers until ctx ends.
func (ix *Index) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ix.changed:
		}
		ix.mu.Lock()
		all, dirty := ix.dirtyAll, ix.dirty
		ix.dirtyAll, ix.dirty = false, map[string]bool{}
		for k, ws := range ix.watches {
			if !all {
				e, _, ok := ix.resolve(k.Target)
				if !ok || !dirty[nsName(e.svc.Namespace, e.svc.Name)] {
					continue // unresolved targets change only with Services
				}
			}
			t := ix.table(k)
			if reflect.DeepEqual(t, ws.table) {
				continue
			}
			ws.table = t
			for ch := range ws.subs {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
		ix.mu.Unlock()
	}
}

// Watchers is the number of subscriptions (streams) open.
func (ix *Index) Watchers() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := 0
	for _, ws := range ix.watches {
		n += len(ws.subs)
	}
	return n
}

// Routes is the number of routes with a Service parent in the index.
func (ix *Index) Routes() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.routes)
}
