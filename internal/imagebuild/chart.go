package imagebuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Chart is what the weft-control-plane chart runs when installed without
// image values.
type Chart struct {
	Version string            // linkerdVersion, else the chart's appVersion
	Refs    map[string]string // image name → reference, e.g. weft-proxy → ghcr.io/weftmesh/weft-proxy:dev
}

// ReadChart reads the default image references from a chart directory's
// Chart.yaml and values.yaml, as the templates and the injector compute
// them: the repository, then the image's own version, else linkerdVersion,
// else appVersion.
func ReadChart(dir string) (Chart, error) {
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		LinkerdVersion         string `json:"linkerdVersion"`
		ControllerImage        string `json:"controllerImage"`
		ControllerImageVersion string `json:"controllerImageVersion"`
		Proxy                  struct {
			Image image `json:"image"`
		} `json:"proxy"`
		ProxyInit struct {
			Image image `json:"image"`
		} `json:"proxyInit"`
	}
	for name, v := range map[string]any{"Chart.yaml": &meta, "values.yaml": &values} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return Chart{}, fmt.Errorf("chart: %w", err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			return Chart{}, fmt.Errorf("chart %s: %w", filepath.Join(dir, name), err)
		}
	}
	c := Chart{Version: first(values.LinkerdVersion, meta.AppVersion)}
	if c.Version == "" {
		return Chart{}, fmt.Errorf("chart %s: neither linkerdVersion nor appVersion is set", dir)
	}
	c.Refs = map[string]string{
		Controller: ref(values.ControllerImage, first(values.ControllerImageVersion, c.Version)),
		Proxy:      ref(values.Proxy.Image.Name, first(values.Proxy.Image.Version, c.Version)),
		ProxyInit:  ref(values.ProxyInit.Image.Name, first(values.ProxyInit.Image.Version, c.Version)),
	}
	for name, r := range c.Refs {
		if r == "" {
			return Chart{}, fmt.Errorf("chart %s: no repository for %s", dir, name)
		}
	}
	return c, nil
}

type image struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func ref(repo, version string) string {
	if repo == "" {
		return ""
	}
	return repo + ":" + version
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// readVizPrometheus reads the weft-viz chart's default Prometheus image
// reference: prometheus.image.name, tagged prometheus.image.tag, else
// linkerdVersion, else the chart's appVersion (as its template does).
func readVizPrometheus(dir string) (string, error) {
	return readExtensionImage(dir, "prometheus", "tag")
}

// readJaegerImage reads the weft-jaeger chart's default Jaeger image
// reference: jaeger.image.name, tagged jaeger.image.version, else
// linkerdVersion, else the chart's appVersion (as its template does).
func readJaegerImage(dir string) (string, error) {
	return readExtensionImage(dir, "jaeger", "version")
}

// readExtensionImage reads an extension chart's default image for the
// values key: <key>.image.name, tagged <key>.image.<tagKey>, else
// linkerdVersion, else the chart's appVersion.
func readExtensionImage(dir, key, tagKey string) (string, error) {
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	var versions struct {
		LinkerdVersion string `json:"linkerdVersion"`
	}
	var values map[string]any
	for _, f := range []struct {
		name string
		into []any
	}{{"Chart.yaml", []any{&meta}}, {"values.yaml", []any{&versions, &values}}} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return "", fmt.Errorf("chart: %w", err)
		}
		for _, v := range f.into {
			if err := yaml.Unmarshal(b, v); err != nil {
				return "", fmt.Errorf("chart %s: %w", filepath.Join(dir, f.name), err)
			}
		}
	}
	comp, _ := values[key].(map[string]any)
	img, _ := comp["image"].(map[string]any)
	name, _ := img["name"].(string)
	tag, _ := img[tagKey].(string)
	r := ref(name, first(tag, versions.LinkerdVersion, meta.AppVersion))
	if r == "" || strings.HasSuffix(r, ":") {
		return "", fmt.Errorf("chart %s: no %s.image.name or version", dir, key)
	}
	return r, nil
}
