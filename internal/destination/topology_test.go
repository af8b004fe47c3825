package destination

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/compat"
)

func TestParseContextToken(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		want    compat.DestinationContext
		wantErr bool
	}{
		{"empty", "", compat.DestinationContext{}, false},
		{"blank", "  ", compat.DestinationContext{}, false},
		{"linkerd's JSON", `{"ns":"shop","nodeName":"node-a","pod":"web-123"}`,
			compat.DestinationContext{Namespace: "shop", NodeName: "node-a", Pod: "web-123"}, false},
		{"unknown fields ignored", `{"ns":"shop","nodeName":"node-a","extra":1}`,
			compat.DestinationContext{Namespace: "shop", NodeName: "node-a"}, false},
		{"no node", `{"ns":"shop"}`, compat.DestinationContext{Namespace: "shop"}, false},
		{"older ns: form", "ns:shop", compat.DestinationContext{Namespace: "shop"}, false},
		{"truncated JSON", `{"ns":"shop","nodeName":`, compat.DestinationContext{}, true},
		{"wrong type", `{"nodeName":7}`, compat.DestinationContext{}, true},
		{"JSON array", `["node-a"]`, compat.DestinationContext{}, true},
		{"garbage", "node-a", compat.DestinationContext{}, true},
		{"ns: without a name", "ns:", compat.DestinationContext{}, true},
		{"too many parts", "ns:shop:x", compat.DestinationContext{}, true},
	}
	for _, tt := range tests {
		got, err := ParseContextToken(tt.token)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%s: ParseContextToken(%q) = %+v, %v; want %+v, error %v", tt.name, tt.token, got, err, tt.want, tt.wantErr)
		}
	}
}

// zoned is an endpoint at 198.18.0.<n>:80 hinted for zones (none: no hints).
func zoned(n string, zones ...string) Endpoint {
	return Endpoint{Addr: "198.18.0." + n + ":80", ForZones: zones}
}

func addrs(s Snapshot) string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(e.Addr, "198.18.0."), ":80"))
	}
	return strings.Join(out, ",")
}

func TestFilterByZone(t *testing.T) {
	term := func(e Endpoint) Endpoint { e.Terminating = true; return e }
	tests := []struct {
		name string
		zone string
		eps  []Endpoint
		want string // the addresses' last octets kept, in order
	}{
		{"no endpoints", "zone-a", nil, ""},
		{"zone unknown", "", []Endpoint{zoned("1", "zone-a"), zoned("2", "zone-b")}, "1,2"},
		{"all hinted", "zone-a", []Endpoint{zoned("1", "zone-a"), zoned("2", "zone-b"), zoned("3", "zone-a")}, "1,3"},
		{"the other zone", "zone-b", []Endpoint{zoned("1", "zone-a"), zoned("2", "zone-b"), zoned("3", "zone-a")}, "2"},
		{"hinted for several zones", "zone-b", []Endpoint{zoned("1", "zone-a", "zone-b"), zoned("2", "zone-c")}, "1"},
		{"one endpoint without hints", "zone-a", []Endpoint{zoned("1", "zone-a"), zoned("2"), zoned("3", "zone-b")}, "1,2,3"},
		{"no hints at all", "zone-a", []Endpoint{zoned("1"), zoned("2")}, "1,2"},
		{"nothing for the caller's zone", "zone-c", []Endpoint{zoned("1", "zone-a"), zoned("2", "zone-b")}, "1,2"},
		{"empty hint list is no hints", "zone-a", []Endpoint{zoned("1", "zone-a"), zoned("2", []string{}...)}, "1,2"},
		{"terminating without hints does not disable", "zone-a", []Endpoint{zoned("1", "zone-a"), term(zoned("2")), zoned("3", "zone-b")}, "1"},
		{"terminating hinted for the zone kept", "zone-a", []Endpoint{zoned("1", "zone-a"), term(zoned("2", "zone-a")), zoned("3", "zone-b")}, "1,2"},
		{"only a terminating one for the zone", "zone-a", []Endpoint{term(zoned("1", "zone-a")), zoned("2", "zone-b")}, "1,2"},
		{"all terminating", "zone-a", []Endpoint{term(zoned("1")), term(zoned("2"))}, "1,2"},
	}
	for _, tt := range tests {
		in := Snapshot{Exists: true, Endpoints: tt.eps, Labels: map[string]string{"dst_service": "web"}}
		before := slices.Clone(tt.eps)
		got := FilterByZone(in, tt.zone)
		if addrs(got) != tt.want {
			t.Errorf("%s: kept %q, want %q", tt.name, addrs(got), tt.want)
		}
		if !got.Exists || got.Labels["dst_service"] != "web" {
			t.Errorf("%s: snapshot fields lost: %+v", tt.name, got)
		}
		if !reflect.DeepEqual(tt.eps, before) {
			t.Errorf("%s: the input was modified", tt.name)
		}
	}
}

// TestZoneFilteredDiffs: a stream's differ, fed filtered snapshots, sends
// exactly the changes of its own view as hints, endpoints and the caller's
// zone change.
func TestZoneFilteredDiffs(t *testing.T) {
	a1, a2, b1 := zoned("1", "zone-a"), zoned("2", "zone-a"), zoned("3", "zone-b")
	b1ForA := zoned("3", "zone-a", "zone-b")
	snap := func(eps ...Endpoint) Snapshot { return Snapshot{Exists: true, Endpoints: eps} }
	var d Differ
	steps := []struct {
		name    string
		zone    string
		snap    Snapshot
		want    Diff
		changed bool
	}{
		{"first, filtered", "zone-a", snap(a1, b1), Diff{Add: []Endpoint{a1}, Exists: true, Labels: map[string]string{}}, true},
		{"other zone's endpoint added: nothing to send", "zone-a", snap(a1, b1, zoned("4", "zone-b")), Diff{}, false},
		{"own zone's endpoint added", "zone-a", snap(a1, a2, b1), Diff{Add: []Endpoint{a2}, Exists: true}, true},
		{"a hint now includes zone-a", "zone-a", snap(a1, a2, b1ForA), Diff{Add: []Endpoint{b1ForA}, Exists: true}, true},
		{"hints removed from one: all", "zone-a", snap(a1, zoned("2"), b1ForA), Diff{Add: []Endpoint{zoned("2")}, Exists: true}, true},
		{"hints back", "zone-a", snap(a1, a2, b1), Diff{Add: []Endpoint{a2}, Remove: []string{"198.18.0.3:80"}, Exists: true}, true},
		{"the caller's node moves to zone-b", "zone-b", snap(a1, a2, b1), Diff{Add: []Endpoint{b1}, Remove: []string{"198.18.0.1:80", "198.18.0.2:80"}, Exists: true}, true},
		{"zone no longer known: all", "", snap(a1, a2, b1), Diff{Add: []Endpoint{a1, a2}, Exists: true}, true},
		{"scaled to zero", "zone-a", snap(), Diff{NoEndpoints: true, Exists: true}, true},
	}
	for _, s := range steps {
		got, changed := d.Next(FilterByZone(s.snap, s.zone))
		if changed != s.changed || !reflect.DeepEqual(got, s.want) {
			t.Errorf("%s: got %+v (changed %v), want %+v (changed %v)", s.name, got, changed, s.want, s.changed)
		}
	}
}
