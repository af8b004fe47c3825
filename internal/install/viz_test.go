package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/manifest"
)

// vizRender renders the weft-viz chart in linkerd-viz with sets over the
// defaults.
func vizRender(t *testing.T, sets ...string) (string, map[string][]string) {
	t.Helper()
	// A regexp's backslashes survive a values file, not --set.
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte("dashboard:\n  enforcedHostRegexp: '^dashboard\\.example\\.com$'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []string{f}
	if len(sets) == 0 {
		files = nil
	}
	vals, err := Overlay(map[string]any{"linkerdVersion": "v1.2.3"}, Options{Sets: sets, ValuesFiles: files})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(VizChart, "weft-viz", "linkerd-viz", vals)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatalf("not YAML: %v", err)
	}
	args := map[string][]string{} // Deployment name → its first container's args
	for _, d := range docs {
		if d.String("/kind") != "Deployment" {
			continue
		}
		var a []string
		for i := 0; ; i++ {
			s := d.String("/spec/template/spec/containers/0/args/" + strconv.Itoa(i))
			if s == "" {
				break
			}
			a = append(a, s)
		}
		args[d.String("/metadata/name")] = a
	}
	return out, args
}

func argValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestRenderVizDefaults(t *testing.T) {
	out, args := vizRender(t)
	got := kinds(t, out)
	for kind, n := range map[string]int{"Namespace": 1, "Deployment": 4, "Service": 4, "ConfigMap": 2, "ClusterRole": 4, "ServiceAccount": 4, "Role": 1} {
		if got[kind] != n {
			t.Errorf("%d %s, want %d (all: %v)", got[kind], kind, n, got)
		}
	}
	if v, _ := argValue(args["metrics-api"], "--prometheus-url"); v != "http://prometheus.linkerd-viz.svc.cluster.local:9090" {
		t.Errorf("metrics-api --prometheus-url = %q, want the bundled Prometheus", v)
	}
	for flag, want := range map[string]string{
		"--identity":      "tap.linkerd-viz.serviceaccount.identity.linkerd.cluster.local",
		"--identity-addr": "linkerd-identity-headless.linkerd.svc.cluster.local:8080",
	} {
		if v, _ := argValue(args["tap"], flag); v != want {
			t.Errorf("tap %s = %q, want %q", flag, v, want)
		}
	}
	if v, _ := argValue(args["web"], "--metrics-api-addr"); v != "metrics-api.linkerd-viz.svc.cluster.local:8085" {
		t.Errorf("web --metrics-api-addr = %q", v)
	}
	if !strings.Contains(out, "image: ghcr.io/weftmesh/weft-controller:v1.2.3") {
		t.Error("the controller image is not tagged with the version")
	}
	host, _ := argValue(args["web"], "--enforced-host")
	re, err := regexp.Compile(host)
	if err != nil {
		t.Fatalf("default --enforced-host %q: %v", host, err)
	}
	for h, want := range map[string]bool{
		"localhost:8084": true, "127.0.0.1:50750": true, "[::1]:8084": true, "localhost": true,
		"web.linkerd-viz.svc.cluster.local:8084": true, "web.linkerd-viz.svc": true,
		"evil.example.com": false, "localhost.evil.example.com": false, "web.linkerd-viz.svc.cluster.local.evil.com": false,
	} {
		if re.MatchString(h) != want {
			t.Errorf("default enforced host regexp on %q: %v, want %v", h, !want, want)
		}
	}
}

func TestRenderVizExternalPrometheusAndGrafana(t *testing.T) {
	out, args := vizRender(t, "prometheus.enabled=false", "prometheusUrl=http://prometheus.monitoring.svc.cluster.local:9090",
		"grafana.url=grafana.grafana:3000", "grafana.externalUrl=https://grafana.example.com", "jaegerUrl=jaeger.tracing:16686",
		"installNamespace=false", "grafana.dashboards=false",
		"metricsAPI.resources.memory.limit=256Mi")
	if got := kinds(t, out); got["Deployment"] != 3 || got["Namespace"] != 0 || got["ConfigMap"] != 0 {
		t.Errorf("objects %v, want metrics-api, web and tap, no Prometheus and no Namespace", got)
	}
	for _, c := range []struct{ deploy, flag, want string }{
		{"metrics-api", "--prometheus-url", "http://prometheus.monitoring.svc.cluster.local:9090"},
		{"web", "--grafana-url", "grafana.grafana:3000"},
		{"web", "--grafana-external-url", "https://grafana.example.com"},
		{"web", "--jaeger-url", "jaeger.tracing:16686"},
		{"web", "--enforced-host", `^dashboard\.example\.com$`},
	} {
		if v, ok := argValue(args[c.deploy], c.flag); !ok || v != c.want {
			t.Errorf("%s %s = %q, want %q", c.deploy, c.flag, v, c.want)
		}
	}
	if !strings.Contains(out, `memory: "256Mi"`) {
		t.Error("metricsAPI.resources.memory.limit not rendered")
	}
	vals, _ := Overlay(map[string]any{}, Options{Sets: []string{"prometheus.enabled=false"}})
	if _, err := Render(VizChart, "weft-viz", "linkerd-viz", vals); err == nil || !strings.Contains(err.Error(), "set prometheusUrl") {
		t.Errorf("prometheus.enabled=false without prometheusUrl: %v, want an error naming prometheusUrl", err)
	}
}

// TestVizPrometheusConfigIsValid checks the bundled Prometheus's
// configuration with Prometheus's own promtool.
func TestVizPrometheusConfigIsValid(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	// With http discovery (the default, for Debian's Prometheus) the
	// configuration is checked as it is.
	out, _ := vizRender(t)
	p := filepath.Join(t.TempDir(), "prometheus-http.yml")
	if err := os.WriteFile(p, []byte(prometheusYML(t, out)), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(promtool, "check", "config", p).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config (http discovery): %v\n%s", err, b)
	}
	if !strings.Contains(prometheusYML(t, out), "url: http://metrics-api.linkerd-viz.svc.cluster.local:8085/api/v1/prometheus-sd") {
		t.Error("http discovery does not ask the metrics API")
	}
	if _, err := Render(VizChart, "weft-viz", "linkerd-viz", map[string]any{"prometheus": map[string]any{"discovery": "dns"}}); err == nil ||
		!strings.Contains(err.Error(), `prometheus.discovery "dns": want kubernetes or http`) {
		t.Errorf("prometheus.discovery=dns: %v", err)
	}

	out, _ = vizRender(t, "prometheus.discovery=kubernetes")
	cfg := prometheusYML(t, out)
	if !strings.Contains(cfg, "regex: ^linkerd-proxy;linkerd-admin;linkerd$") {
		t.Fatalf("prometheus.yml lacks the proxy job's keep rule:\n%s", cfg)
	}
	// Debian's Prometheus (and so its promtool) is built without Kubernetes
	// service discovery: check the jobs with their discovery swapped for
	// static_configs, after checking it is Kubernetes' pod role.
	var parsed map[string]any
	if err := yaml.Unmarshal([]byte(cfg), &parsed); err != nil {
		t.Fatal(err)
	}
	jobs, _ := parsed["scrape_configs"].([]any)
	if len(jobs) != 2 {
		t.Fatalf("scrape_configs: %v, want the jobs linkerd-proxy and linkerd-controller", jobs)
	}
	for _, j := range jobs {
		job := j.(map[string]any)
		sd, _ := job["kubernetes_sd_configs"].([]any)
		if len(sd) != 1 || sd[0].(map[string]any)["role"] != "pod" {
			t.Errorf("job %v: kubernetes_sd_configs %v, want role pod", job["job_name"], sd)
		}
		delete(job, "kubernetes_sd_configs")
		job["static_configs"] = []any{map[string]any{"targets": []string{"127.0.0.1:4191"}}}
	}
	b, err := yaml.Marshal(parsed)
	if err != nil {
		t.Fatal(err)
	}
	p = filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(promtool, "check", "config", p).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, b, cfg)
	}
}

func TestVizGrafanaDashboardsConfigMap(t *testing.T) {
	out, _ := vizRender(t)
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, d := range docs {
		if d.String("/metadata/name") != "weft-grafana-dashboards" {
			continue
		}
		if d.String("/metadata/labels/grafana_dashboard") != "1" {
			t.Error("no grafana_dashboard label")
		}
		for _, f := range []string{"top-line.json", "namespace.json", "deployment.json", "pod.json", "service.json", "route.json", "authority.json", "health.json"} {
			var dash struct {
				UID    string `json:"uid"`
				Panels []any  `json:"panels"`
			}
			if err := yaml.Unmarshal([]byte(d.String("/data/"+f)), &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
				t.Errorf("%s: %v, uid %q, %d panels", f, err, dash.UID, len(dash.Panels))
			}
			found++
		}
	}
	if found != 8 {
		t.Errorf("%d dashboards in the ConfigMap, want 8", found)
	}
}

// TestRenderVizSeedValues renders the seeds' linkerd-viz-values.yaml (an
// external kube-prometheus-stack Prometheus and Grafana, the namespace made
// by the user).
func TestRenderVizSeedValues(t *testing.T) {
	f := filepath.Join(t.TempDir(), "linkerd-viz-values.yaml")
	seed := `installNamespace: false
prometheus:
  enabled: false
prometheusUrl: http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090
grafana:
  url: http://kube-prometheus-stack-grafana.monitoring.svc.cluster.local
`
	if err := os.WriteFile(f, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	vals, err := Overlay(map[string]any{}, Options{ValuesFiles: []string{f}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(VizChart, "linkerd-viz", "linkerd-viz", vals)
	if err != nil {
		t.Fatal(err)
	}
	got := kinds(t, out)
	if got["Namespace"] != 0 || got["Deployment"] != 3 {
		t.Errorf("objects %v, want metrics-api, web and tap only, no namespace", got)
	}
	for _, want := range []string{
		"--prometheus-url=http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090",
		"--grafana-url=http://kube-prometheus-stack-grafana.monitoring.svc.cluster.local",
		// The seeds' Ingress sets upstream-vhost web.linkerd-viz.svc.cluster.local:8084: admitted.
		`--enforced-host=^(localhost|127\.0\.0\.1|web\.linkerd-viz\.svc\.cluster\.local|web\.linkerd-viz\.svc|\[::1\])(:\d+)?$`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered manifests lack %s", want)
		}
	}
}

// prometheusYML is the bundled Prometheus's configuration in a rendering.
func prometheusYML(t *testing.T, out string) string {
	t.Helper()
	docs, err := manifest.Read(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if d.String("/kind") == "ConfigMap" && d.String("/metadata/name") == "prometheus-config" {
			return d.String("/data/prometheus.yml")
		}
	}
	t.Fatal("no prometheus-config ConfigMap")
	return ""
}
