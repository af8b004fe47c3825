// Package install renders Weft's embedded Helm charts with Helm's own engine
// (what `weft install` and `weft upgrade` print), generates the identity
// trust anchor and issuer when none are given, and lists what `weft
// uninstall` deletes.
package install

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"

	"github.com/weftmesh/weft/charts"
)

// Chart names.
const (
	CRDsChart         = "weft-crds"
	ControlPlaneChart = "weft-control-plane"
)

// Load reads an embedded chart.
func Load(name string) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(charts.FS, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(charts.FS, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, name+"/"), Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", name, err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", name, err)
	}
	return c, nil
}

// Render renders chart name into one YAML stream in Helm's install order,
// for release name in namespace, with vals over the chart's defaults.
func Render(name, release, namespace string, vals map[string]any) (string, error) {
	c, err := Load(name)
	if err != nil {
		return "", err
	}
	if err := chartutil.ProcessDependenciesWithMerge(c, vals); err != nil {
		return "", err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}
	rv, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	out, err := engine.Render(c, rv)
	if err != nil {
		return "", fmt.Errorf("rendering %s: %w", name, err)
	}
	for k := range out {
		if path.Ext(k) != ".yaml" && path.Ext(k) != ".yml" {
			delete(out, k)
		}
	}
	_, manifests, err := releaseutil.SortManifests(out, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return "", fmt.Errorf("sorting %s's manifests: %w", name, err)
	}
	var b strings.Builder
	for _, m := range manifests {
		if strings.TrimSpace(m.Content) == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Name, strings.TrimSpace(m.Content))
	}
	return b.String(), nil
}
