package inject

import (
	"encoding/json"
	"testing"
)

func TestUninject(t *testing.T) {
	for _, tt := range []struct {
		name, resource, want string
	}{
		{"namespace", `{"kind":"Namespace","metadata":{"name":"a","annotations":{"linkerd.io/inject":"enabled"}}}`,
			`[{"op":"remove","path":"/metadata/annotations"}]`},
		{"namespace keeps other annotations", `{"kind":"Namespace","metadata":{"annotations":{"linkerd.io/inject":"enabled","team":"x"}}}`,
			`[{"op":"remove","path":"/metadata/annotations/linkerd.io~1inject"}]`},
		{"not a workload", `{"kind":"Service","metadata":{"annotations":{"linkerd.io/inject":"enabled"}}}`, `null`},
		{"nothing injected", `{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app"}]}}`, `null`},
		{"deployment", `{"kind":"Deployment","spec":{"template":{
			"metadata":{"annotations":{"linkerd.io/inject":"enabled","linkerd.io/created-by":"weft","kubectl.kubernetes.io/default-container":"app"},
			            "labels":{"app":"web","linkerd.io/control-plane-ns":"linkerd","linkerd.io/proxy-deployment":"web"}},
			"spec":{"initContainers":[{"name":"linkerd-init"}],
			        "containers":[{"name":"linkerd-proxy"},{"name":"app"},{"name":"sidecar"}],
			        "volumes":[{"name":"data"},{"name":"linkerd-identity-end-entity"},{"name":"linkerd-identity-token"}]}}}}`,
			`[{"op":"remove","path":"/spec/template/metadata/annotations"},` +
				`{"op":"remove","path":"/spec/template/metadata/labels/linkerd.io~1control-plane-ns"},` +
				`{"op":"remove","path":"/spec/template/metadata/labels/linkerd.io~1proxy-deployment"},` +
				`{"op":"remove","path":"/spec/template/spec/containers/0"},` +
				`{"op":"remove","path":"/spec/template/spec/initContainers"},` +
				`{"op":"remove","path":"/spec/template/spec/volumes/2"},` +
				`{"op":"remove","path":"/spec/template/spec/volumes/1"}]`},
		{"user's default container and emptied template metadata", `{"kind":"Job","spec":{"template":{
			"metadata":{"annotations":{"linkerd.io/inject":"enabled","kubectl.kubernetes.io/default-container":"sidecar"}},
			"spec":{"containers":[{"name":"app"},{"name":"sidecar"},{"name":"linkerd-proxy"}]}}}}`,
			`[{"op":"remove","path":"/spec/template/metadata/annotations/linkerd.io~1inject"},` +
				`{"op":"remove","path":"/spec/template/spec/containers/2"}]`},
		{"template metadata left empty goes", `{"kind":"Deployment","spec":{"template":{
			"metadata":{"annotations":{"linkerd.io/inject":"enabled"}},"spec":{"containers":[{"name":"app"}]}}}}`,
			`[{"op":"remove","path":"/spec/template/metadata/annotations"},{"op":"remove","path":"/spec/template/metadata"}]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ops, err := Uninject([]byte(tt.resource))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(ops)
			if string(got) != tt.want {
				t.Errorf("Uninject =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	if _, err := Uninject([]byte(`{not json`)); err == nil {
		t.Error("Uninject of malformed JSON: no error")
	}
}
