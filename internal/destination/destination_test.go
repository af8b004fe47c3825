package destination

import (
	"reflect"
	"testing"
)

func TestDiffer(t *testing.T) {
	a := Endpoint{Addr: "198.18.0.1:80"}
	b := Endpoint{Addr: "198.18.0.2:80"}
	bTerm := Endpoint{Addr: "198.18.0.2:80", Terminating: true}
	lbl := map[string]string{"dst_service": "web"}
	var d Differ
	steps := []struct {
		name    string
		snap    Snapshot
		want    Diff
		changed bool
	}{
		{"first set", Snapshot{Exists: true, Endpoints: []Endpoint{a, b}, Labels: lbl}, Diff{Add: []Endpoint{a, b}, Exists: true, Labels: lbl}, true},
		{"same again", Snapshot{Exists: true, Endpoints: []Endpoint{b, a}, Labels: lbl}, Diff{}, false},
		{"b terminating", Snapshot{Exists: true, Endpoints: []Endpoint{a, bTerm}, Labels: lbl}, Diff{Add: []Endpoint{bTerm}, Exists: true}, true},
		{"b gone", Snapshot{Exists: true, Endpoints: []Endpoint{a}, Labels: lbl}, Diff{Remove: []string{"198.18.0.2:80"}, Exists: true}, true},
		{"scaled to zero", Snapshot{Exists: true, Labels: lbl}, Diff{NoEndpoints: true, Exists: true}, true},
		{"still zero", Snapshot{Exists: true, Labels: lbl}, Diff{}, false},
		{"back", Snapshot{Exists: true, Endpoints: []Endpoint{a}, Labels: lbl}, Diff{Add: []Endpoint{a}, Exists: true, Labels: lbl}, true},
		{"deleted", Snapshot{Exists: false}, Diff{NoEndpoints: true, Exists: false}, true},
	}
	for _, s := range steps {
		got, changed := d.Next(s.snap)
		if changed != s.changed || !reflect.DeepEqual(got, s.want) {
			t.Errorf("%s: got %+v (changed %v), want %+v (changed %v)", s.name, got, changed, s.want, s.changed)
		}
	}
}

func TestToUpdatesRemovesBeforeAdding(t *testing.T) {
	u := ToUpdates(Diff{Add: []Endpoint{{Addr: "b:1", Identity: "id"}, {Addr: "a:1"}}, Remove: []string{"c:1"}, Exists: true})
	if len(u) != 2 || u[0].GetRemove() == nil || u[1].GetAdd() == nil {
		t.Fatalf("updates = %v, want remove then add", u)
	}
	eps := u[1].GetAdd().GetEndpoints()
	if eps[0].GetAddr() != "a:1" || eps[1].GetTlsIdentity().GetDnsName() != "id" || eps[0].GetWeight() != 10000 {
		t.Errorf("endpoints = %v, want sorted, identity kept, default weight 10000", eps)
	}
}

func TestParseRegistryRefusesBadInput(t *testing.T) {
	tests := []struct{ name, in string }{
		{"name without port", "services: [{name: web, endpoints: []}]"},
		{"endpoint without port", "services: [{name: 'web:80', endpoints: [{addr: 127.0.0.1}]}]"},
		{"duplicate", "services: [{name: 'web:80', endpoints: []}, {name: 'web:80', endpoints: []}]"},
		{"identity on an unmeshed endpoint", "services: [{name: 'web:80', endpoints: [{addr: '127.0.0.1:1', identity: x}]}]"},
		{"unknown field", "services: [{name: 'web:80', endpoint: []}]"},
	}
	for _, tt := range tests {
		if _, err := ParseRegistry([]byte(tt.in)); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}
