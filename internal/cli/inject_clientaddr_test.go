package cli

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/manifest"
)

// TestInjectPreserveClientAddress: weft inject --preserve-client-address
// writes Weft's annotation; with --manual the proxy and linkerd-init get
// what it needs; uninject removes them and keeps the annotation (the
// user's choice, like config.linkerd.io/*).
func TestInjectPreserveClientAddress(t *testing.T) {
	const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: api:1
`
	annotated, report, err := run(t, deploy, "inject", "--preserve-client-address", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, report)
	}
	if !strings.Contains(annotated, compat.AnnotationPreserveClientAddress+`: "true"`) || strings.Contains(annotated, compat.ProxyContainerName) {
		t.Fatalf("inject without --manual should only annotate:\n%s", annotated)
	}
	manual, report, err := run(t, annotated, "inject", "--manual", "--trust-anchors-file", "testdata/anchors.pem", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, report)
	}
	docs, err := manifest.Read(strings.NewReader(manual))
	if err != nil || len(docs) != 1 {
		t.Fatalf("reading the output: %v (%d documents)", err, len(docs))
	}
	raw, err := docs[0].JSON()
	if err != nil {
		t.Fatal(err)
	}
	w, err := inject.ParseWorkload(raw)
	if err != nil {
		t.Fatal(err)
	}
	var proxy, init corev1.Container
	for _, c := range w.PodSpec.Containers {
		if c.Name == compat.ProxyContainerName {
			proxy = c
		}
	}
	init = w.PodSpec.InitContainers[0]
	env := map[string]string{}
	for _, e := range proxy.Env {
		env[e.Name] = e.Value
	}
	args := strings.Join(init.Args, " ")
	if env[compat.EnvPreserveClientAddress] != "true" || !slices.Contains(proxy.SecurityContext.Capabilities.Add, "NET_ADMIN") ||
		*proxy.SecurityContext.RunAsUser != 0 || *proxy.SecurityContext.RunAsGroup != compat.ProxyUID ||
		!strings.Contains(args, "--proxy-gid 2102") || !strings.Contains(args, "--preserve-client-address") {
		t.Errorf("proxy env %v, security %+v; init args %q", env, proxy.SecurityContext, args)
	}
	restored, report, err := run(t, manual, "uninject", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, report)
	}
	// linkerd.io/inject goes, as always; Weft's annotation stays.
	kept := strings.Replace(deploy, "      labels: {app: api}\n", "      labels: {app: api}\n      annotations: {"+compat.AnnotationPreserveClientAddress+": \"true\"}\n", 1)
	got, want := asJSON(t, restored), asJSON(t, kept)
	if len(got) != 1 || len(want) != 1 || got[0] != want[0] {
		t.Errorf("uninject did not give back the annotated Deployment:\n got %s\nwant %s", got, want)
	}
}
