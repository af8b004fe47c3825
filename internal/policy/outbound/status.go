package outbound

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// Condition types written on each Service parent.
const (
	CondAccepted     = "Accepted"
	CondResolvedRefs = "ResolvedRefs"
	// CondConflicted is Weft's: True when some of the route's matches are
	// also claimed by an older route on the same parent (the older one
	// wins, as the Gateway API orders ties).
	CondConflicted = "Conflicted"
)

// Status returns the route's desired status.parents: the entries other
// controllers wrote, kept, and one entry per Service parent of ours.
// Transition times carry over from the object's current status when a
// condition's status did not change. ok is false when the route is not
// known (deleted).
func (ix *Index) Status(routeKey string, now time.Time) (obj *Route, parents []RouteParentStatus, ok bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	re, ok := ix.routes[routeKey]
	if !ok {
		return nil, nil, false
	}
	r, tr := re.obj, re.tr
	prev := map[string]Condition{} // parent|type → condition
	for _, ps := range r.Status {
		if ps.ControllerName != compat.PolicyControllerName {
			parents = append(parents, ps)
			continue
		}
		for _, c := range ps.Conditions {
			prev[parentID(ps.ParentRef, r.Namespace)+"|"+c.Type] = c
		}
	}
	stamp := now.UTC().Format(time.RFC3339)
	cond := func(p ParentRef, typ string, ok bool, reason, msg string) Condition {
		st := "False"
		if ok {
			st = "True"
		}
		c := Condition{Type: typ, Status: st, ObservedGeneration: r.Generation, Reason: reason, Message: msg, LastTransitionTime: stamp}
		if old, found := prev[parentID(p, r.Namespace)+"|"+typ]; found && old.Status == st && old.LastTransitionTime != "" {
			c.LastTransitionTime = old.LastTransitionTime
		}
		return c
	}
	resolvedOK, resolvedReason, resolvedMsg := true, ReasonResolvedRefs, "all backend references resolved"
	var missing, badKind []string
	for _, b := range tr.backends {
		switch {
		case b.Kind != "Service":
			badKind = append(badKind, fmt.Sprintf("%s (%s)", b.Name, strings.Trim(b.Kind, "/")))
		case ix.services[nsName(b.Namespace, b.Name)] == nil:
			missing = append(missing, nsName(b.Namespace, b.Name))
		}
	}
	switch {
	case len(badKind) > 0:
		resolvedOK, resolvedReason = false, ReasonInvalidKind
		resolvedMsg = "unsupported backend kind: " + strings.Join(badKind, ", ") + " (only Services)"
	case len(missing) > 0:
		sort.Strings(missing)
		resolvedOK, resolvedReason = false, ReasonBackendNotFound
		resolvedMsg = "backend Service not found: " + strings.Join(missing, ", ")
	}
	for _, p := range tr.parents {
		var conds []Condition
		svc := ix.services[nsName(p.Namespace, p.Name)]
		switch {
		case svc == nil:
			conds = append(conds, cond(p.Ref, CondAccepted, false, ReasonNoMatchingParent,
				fmt.Sprintf("parent Service %s not found", nsName(p.Namespace, p.Name))))
		case p.Port != 0 && !hasPort(svc.svc.Ports, p.Port):
			conds = append(conds, cond(p.Ref, CondAccepted, false, ReasonNoMatchingParent,
				fmt.Sprintf("parent Service %s has no port %d", nsName(p.Namespace, p.Name), p.Port)))
		case tr.invalid != nil:
			conds = append(conds, cond(p.Ref, CondAccepted, false, ReasonUnsupportedValue, truncate(tr.invalid.Error())))
		default:
			conds = append(conds, cond(p.Ref, CondAccepted, true, ReasonAccepted, "route accepted"))
		}
		conds = append(conds, cond(p.Ref, CondResolvedRefs, resolvedOK, resolvedReason, resolvedMsg))
		if tr.invalid == nil {
			if winner := ix.conflict(re, p); winner != "" {
				conds = append(conds, cond(p.Ref, CondConflicted, true, ReasonMatchConflict,
					"some matches are also claimed by the older route "+winner+", which wins them"))
			} else {
				conds = append(conds, cond(p.Ref, CondConflicted, false, ReasonNoConflict, "no match is claimed by an older route"))
			}
		}
		parents = append(parents, RouteParentStatus{ParentRef: p.Ref, ControllerName: compat.PolicyControllerName, Conditions: conds})
	}
	return r, parents, true
}

// conflict names the oldest route that precedes re on parent p with a
// match identical to one of re's (same kind, same namespace group: both
// producer or both consumer routes of one namespace); "" when none.
// ix.mu is held.
func (ix *Index) conflict(re *routeEntry, p parentTarget) string {
	mine := map[string]bool{}
	for _, m := range re.tr.matches {
		mine[m] = true
	}
	var best *routeEntry
	for key := range ix.byParent[nsName(p.Namespace, p.Name)] {
		o := ix.routes[key]
		if o == re || o.tr.invalid != nil || o.obj.Kind != re.obj.Kind || o.obj.Namespace != re.obj.Namespace ||
			!olderFirst(o.obj, re.obj) || !sharesPort(o.tr, p) {
			continue
		}
		for _, m := range o.tr.matches {
			if mine[m] && (best == nil || olderFirst(o.obj, best.obj)) {
				best = o
				break
			}
		}
	}
	if best == nil {
		return ""
	}
	return best.obj.Namespace + "/" + best.obj.Name
}

func sharesPort(tr *translated, p parentTarget) bool {
	for _, q := range tr.parents {
		if q.Namespace == p.Namespace && q.Name == p.Name && (q.Port == 0 || p.Port == 0 || q.Port == p.Port) {
			return true
		}
	}
	return false
}

func hasPort(ports []uint16, p uint16) bool {
	for _, x := range ports {
		if x == p {
			return true
		}
	}
	return false
}

// parentID identifies a parentRef for matching old and new status.
func parentID(p ParentRef, routeNS string) string {
	port := ""
	if p.Port != nil {
		port = fmt.Sprint(*p.Port)
	}
	return deref(p.Group, "") + "/" + deref(p.Kind, "") + "/" + deref(p.Namespace, routeNS) + "/" + p.Name + ":" + port
}

// truncate bounds a condition message (the API allows 32768 bytes).
func truncate(s string) string {
	const max = 1024
	if len(s) > max {
		return strings.ToValidUTF8(s[:max-3], "") + "..."
	}
	return s
}
