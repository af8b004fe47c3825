package destination

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/weftmesh/weft/internal/compat"
)

// ZoneResolver is an optional Backend capability: the zone of a node
// (Kubernetes: the Node's topology.kubernetes.io/zone label), "" when not
// known. A backend that implements it delivers fresh snapshots to its
// subscribers whenever a node's zone changes, so that every stream filters
// again with its caller's current zone.
type ZoneResolver interface {
	ZoneOf(node string) string
}

// ParseContextToken reads the context token a proxy sends with its
// requests: Linkerd's destination context JSON,
// {"ns":"shop","nodeName":"node-a","pod":"web-123"}, or the older
// "ns:<namespace>" form. An empty token is no context and no error; on a
// malformed one the caller is unknown and the error says why.
func ParseContextToken(token string) (compat.DestinationContext, error) {
	var c compat.DestinationContext
	token = strings.TrimSpace(token)
	if token == "" {
		return c, nil
	}
	if !strings.HasPrefix(token, "{") {
		if ns, ok := strings.CutPrefix(token, compat.LegacyContextTokenPrefix); ok && ns != "" && !strings.Contains(ns, ":") {
			c.Namespace = ns
			return c, nil
		}
		return compat.DestinationContext{}, errors.New("context token is neither JSON nor ns:<namespace>")
	}
	if err := json.Unmarshal([]byte(token), &c); err != nil {
		return compat.DestinationContext{}, fmt.Errorf("context token: %w", err)
	}
	return c, nil
}

// FilterByZone applies an EndpointSlice's topology hints for a caller in
// zone, as kube-proxy does: when the zone is known, every endpoint that
// serves new requests (not terminating) carries hints, and at least one of
// them is hinted for zone, only the endpoints hinted for zone remain;
// otherwise the snapshot is returned whole. Terminating endpoints lose
// their hints when they stop being ready, so they neither prevent nor
// satisfy the filter (they receive no new requests either way). s is not
// modified.
func FilterByZone(s Snapshot, zone string) Snapshot {
	if zone == "" {
		return s
	}
	forZone := 0
	for _, e := range s.Endpoints {
		if e.Terminating {
			continue
		}
		if len(e.ForZones) == 0 {
			return s // not every endpoint is hinted: hints are ignored
		}
		if slices.Contains(e.ForZones, zone) {
			forZone++
		}
	}
	if forZone == 0 {
		return s // nothing for this zone: all zones serve it
	}
	out := s
	out.Endpoints = make([]Endpoint, 0, forZone)
	for _, e := range s.Endpoints {
		if slices.Contains(e.ForZones, zone) {
			out.Endpoints = append(out.Endpoints, e)
		}
	}
	return out
}
