package install

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/manifest"
)

func kinds(t *testing.T, stream string) map[string]int {
	t.Helper()
	docs, err := manifest.Read(strings.NewReader(stream))
	if err != nil {
		t.Fatalf("the rendered stream is not YAML: %v", err)
	}
	out := map[string]int{}
	for _, d := range docs {
		out[d.String("/kind")]++
	}
	return out
}

func TestRenderControlPlaneGeneratesIdentity(t *testing.T) {
	vals, err := ControlPlaneValues(Options{Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
	if err != nil {
		t.Fatal(err)
	}
	got := kinds(t, out)
	for kind, n := range map[string]int{"Namespace": 1, "Deployment": 3, "MutatingWebhookConfiguration": 1, "ConfigMap": 2, "Secret": 2, "ClusterRole": 4} {
		if got[kind] != n {
			t.Errorf("%d %s, want %d (all: %v)", got[kind], kind, n, got)
		}
	}
	if !strings.Contains(out, "image: ghcr.io/weftmesh/weft-controller:v1.2.3") {
		t.Error("controller image not tagged with the version")
	}
	// The generated issuer chains to the generated anchor.
	anchors, _ := vals["identityTrustAnchorsPEM"].(string)
	issuer := vals["identity"].(map[string]any)["issuer"].(map[string]any)["tls"].(map[string]any)["crtPEM"].(string)
	root, iss := parse(t, anchors), parse(t, issuer)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := iss.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("generated issuer does not chain to the generated anchor: %v", err)
	}
	if !strings.Contains(out, strings.Split(strings.TrimSpace(anchors), "\n")[1]) {
		t.Error("the trust anchor is not in the rendered manifests")
	}
}

func parse(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("not PEM: %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenderCRDs(t *testing.T) {
	for _, tt := range []struct {
		sets []string
		want int
	}{{nil, 11}, {[]string{"gatewayAPIChannel=experimental"}, 11}, {[]string{"installGatewayAPI=false"}, 9}, {[]string{"installGatewayAPI=false", "enableHttpRoutes=false"}, 8}} {
		vals, err := Overlay(map[string]any{}, Options{Sets: tt.sets})
		if err != nil {
			t.Fatal(err)
		}
		out, err := Render(CRDsChart, "weft-crds", "linkerd", vals)
		if err != nil {
			t.Fatal(err)
		}
		if got := kinds(t, out)["CustomResourceDefinition"]; got != tt.want {
			t.Errorf("--set %v: %d CRDs, want %d", tt.sets, got, tt.want)
		}
	}
}

// TestRenderGatewayAPIChannel: the experimental channel's HTTPRoute
// carries rules[].retry, the standard one does not; another channel name
// is refused by name.
func TestRenderGatewayAPIChannel(t *testing.T) {
	for _, tt := range []struct {
		channel   string
		wantRetry bool
	}{{"standard", false}, {"experimental", true}} {
		out, err := Render(CRDsChart, "weft-crds", "linkerd", map[string]any{"gatewayAPIChannel": tt.channel})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out, "gateway.networking.k8s.io/channel: "+tt.channel); !got {
			t.Errorf("%s: the CRDs do not say their channel", tt.channel)
		}
		if got := strings.Contains(out, " retry:\n"); got != tt.wantRetry {
			t.Errorf("%s: HTTPRoute has rules[].retry: %v, want %v", tt.channel, got, tt.wantRetry)
		}
	}
	if _, err := Render(CRDsChart, "weft-crds", "linkerd", map[string]any{"gatewayAPIChannel": "beta"}); err == nil || !strings.Contains(err.Error(), "gatewayAPIChannel") {
		t.Errorf("gatewayAPIChannel=beta: error %v, want one naming gatewayAPIChannel", err)
	}
}

func TestIdentityOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "ca.crt")
	os.WriteFile(f, []byte("x"), 0o600)
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{AnchorsFile: f}, "give all of"},
		{Options{ExternalIssuer: true}, "--identity-trust-anchors-file"},
		{Options{AnchorsFile: f, IssuerCertFile: f, IssuerKeyFile: filepath.Join(dir, "missing")}, "no such file"},
		{Options{Sets: []string{"a=b,,"}}, "--set"},
	} {
		if _, err := ControlPlaneValues(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one containing %q", tt.o, err, tt.want)
		}
	}
}

func TestRenderRefusesMissingIssuer(t *testing.T) {
	vals := map[string]any{"identityTrustAnchorsPEM": "x"}
	_, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
	if err == nil || !strings.Contains(err.Error(), "identity.issuer.tls.crtPEM") {
		t.Errorf("error %v, want one naming the missing issuer values", err)
	}
}

// TestChartsLint runs Helm's linter on both charts (as `helm lint` does),
// with the values a real install gives.
func TestChartsLint(t *testing.T) {
	vals, err := ControlPlaneValues(Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	for chart, v := range map[string]map[string]any{"../../charts/weft-crds": {}, "../../charts/weft-control-plane": vals} {
		linter := lint.All(chart, v, "linkerd", false)
		for _, m := range linter.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", chart, m)
			}
		}
	}
}

// TestDisableIPv6Value: linkerd-config carries disableIPv6 (true by
// default, as Linkerd's chart) and the injector's Values decode it.
func TestDisableIPv6Value(t *testing.T) {
	for _, tt := range []struct {
		sets []string
		want bool
	}{{nil, true}, {[]string{"disableIPv6=false"}, false}, {[]string{"disableIPv6=true"}, true}} {
		vals, err := ControlPlaneValues(Options{Version: "v1", Sets: tt.sets})
		if err != nil {
			t.Fatal(err)
		}
		out, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := manifest.Read(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range docs {
			if d.String("/kind") != "ConfigMap" || d.String("/metadata/name") != "linkerd-config" {
				continue
			}
			found = true
			v := inject.DefaultValues()
			v.DisableIPv6 = !tt.want // the ConfigMap's value must win
			if err := yaml.Unmarshal([]byte(d.String("/data/values")), &v); err != nil {
				t.Fatalf("linkerd-config values: %v", err)
			}
			if v.DisableIPv6 != tt.want {
				t.Errorf("--set %v: disableIPv6 = %v, want %v", tt.sets, v.DisableIPv6, tt.want)
			}
		}
		if !found {
			t.Fatal("no linkerd-config rendered")
		}
	}
}

// TestDestinationPodHasItsOwnIdentity: both controllers proxies reach
// (destination, policy) get the projected token an injected proxy gets
// (audience identity.l5d.io) and the trust roots, at the paths their flags
// default to, and neither serves plaintext.
func TestDestinationPodHasItsOwnIdentity(t *testing.T) {
	vals, err := ControlPlaneValues(Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(ControlPlaneChart, "weft-control-plane", "linkerd", vals)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var dep *appsv1.Deployment
	for _, d := range docs {
		if d.String("/kind") == "Deployment" && d.String("/metadata/name") == compat.DestinationComponent {
			b, err := d.JSON()
			if err != nil {
				t.Fatal(err)
			}
			dep = &appsv1.Deployment{}
			if err := json.Unmarshal(b, dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dep == nil {
		t.Fatal("no linkerd-destination Deployment rendered")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	tok := vols[compat.IdentityTokenVolume].Projected
	if tok == nil || len(tok.Sources) != 1 || tok.Sources[0].ServiceAccountToken == nil ||
		tok.Sources[0].ServiceAccountToken.Audience != compat.AudienceIdentity ||
		filepath.Join(compat.IdentityTokenDir, tok.Sources[0].ServiceAccountToken.Path) != compat.IdentityTokenFile {
		t.Errorf("token volume = %+v, want a projected token for %s at %s", vols[compat.IdentityTokenVolume], compat.AudienceIdentity, compat.IdentityTokenFile)
	}
	if cm := vols["trust-roots"].ConfigMap; cm == nil || cm.Name != compat.TrustRootsConfigMap {
		t.Errorf("trust-roots volume = %+v, want ConfigMap %s", vols["trust-roots"], compat.TrustRootsConfigMap)
	}
	if got := len(dep.Spec.Template.Spec.Containers); got != 2 {
		t.Fatalf("%d containers, want destination and policy", got)
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
		if mounts[compat.IdentityTokenVolume] != compat.IdentityTokenDir || mounts["trust-roots"] != filepath.Dir(compat.TrustRootsPath) {
			t.Errorf("container %s mounts %v, want the token at %s and the roots at %s", c.Name, mounts, compat.IdentityTokenDir, filepath.Dir(compat.TrustRootsPath))
		}
		for _, a := range c.Args {
			if a == "--plaintext" {
				t.Errorf("container %s serves plaintext", c.Name)
			}
		}
	}
}
