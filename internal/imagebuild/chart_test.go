package imagebuild

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/ociimage"
)

func TestReadChart(t *testing.T) {
	writeChart := func(t *testing.T, chart, values string) string {
		t.Helper()
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte(chart), 0o644)
		os.WriteFile(filepath.Join(dir, "values.yaml"), []byte(values), 0o644)
		return dir
	}
	const repos = "controllerImage: r/c\nproxy: {image: {name: r/p}}\nproxyInit: {image: {name: r/i}}\n"
	for _, tc := range []struct {
		name          string
		chart, values string
		want          Chart
		wantErr       string
	}{
		{name: "appVersion tags every image", chart: "appVersion: \"1.2\"\n", values: repos,
			want: Chart{Version: "1.2", Refs: map[string]string{Controller: "r/c:1.2", Proxy: "r/p:1.2", ProxyInit: "r/i:1.2"}}},
		{name: "linkerdVersion wins over appVersion", chart: "appVersion: dev\n", values: repos + "linkerdVersion: v9\n",
			want: Chart{Version: "v9", Refs: map[string]string{Controller: "r/c:v9", Proxy: "r/p:v9", ProxyInit: "r/i:v9"}}},
		{name: "an image's own version wins", chart: "appVersion: dev\n",
			values: "controllerImage: r/c\ncontrollerImageVersion: c1\nproxy: {image: {name: r/p, version: p1}}\nproxyInit: {image: {name: r/i, version: i1}}\n",
			want:   Chart{Version: "dev", Refs: map[string]string{Controller: "r/c:c1", Proxy: "r/p:p1", ProxyInit: "r/i:i1"}}},
		{name: "no version", chart: "name: x\n", values: repos, wantErr: "neither linkerdVersion nor appVersion"},
		{name: "no repository", chart: "appVersion: dev\n", values: "controllerImage: r/c\n", wantErr: "no repository"},
		{name: "not YAML", chart: "appVersion: [\n", values: repos, wantErr: "Chart.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadChart(writeChart(t, tc.chart, tc.values))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := ReadChart(t.TempDir()); err == nil {
		t.Error("a directory without a chart was read")
	}
}

// The images are named as the chart in this repository names them by
// default, which is what makes helm install without image values run them.
func TestRepositoryChartNames(t *testing.T) {
	c, err := ReadChart("../../charts/weft-control-plane")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{Controller: "ghcr.io/weftmesh/weft-controller:", Proxy: "ghcr.io/weftmesh/weft-proxy:", ProxyInit: "ghcr.io/weftmesh/weft-proxy-init:"} {
		if got := c.Refs[name]; got != want+c.Version {
			t.Errorf("%s: %q, want %q", name, got, want+c.Version)
		}
	}
}

func TestSelectAndPlatforms(t *testing.T) {
	for _, tc := range []struct {
		images  []string
		want    []string
		wantErr bool
	}{
		{images: nil, want: []string{Controller, Proxy, ProxyInit, Prometheus, Jaeger}},
		{images: []string{Proxy, Proxy}, want: []string{Proxy}},
		{images: []string{ProxyInit, Controller}, want: []string{ProxyInit, Controller}},
		{images: []string{"weft-nope"}, wantErr: true},
	} {
		got, err := selectSpecs(tc.images)
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: error %v", tc.images, err)
			continue
		}
		var names []string
		for _, s := range got {
			names = append(names, s.name)
		}
		if !tc.wantErr && !reflect.DeepEqual(names, tc.want) {
			t.Errorf("%v: %v, want %v", tc.images, names, tc.want)
		}
	}
	for _, p := range Platforms {
		if _, err := goEnv(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if _, err := debianArch(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, bad := range []string{"windows/amd64", "linux/riscv64", "linux/arm/v5"} {
		p := parse(t, bad)
		if _, err := goEnv(p); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Build refuses bad options before compiling anything.
func TestBuildRefuses(t *testing.T) {
	names := Names()
	defer func() {
		// Build filters its own list: a build for platforms Jaeger is not
		// built for must leave every image known to the next one.
		if got := Names(); !slices.Equal(got, names) {
			t.Errorf("after the refused builds Names() = %v, want %v", got, names)
		}
	}()
	root := repoRoot(t)
	amd64 := parse(t, "linux/amd64")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no root", Options{OutDir: t.TempDir()}, "Root and OutDir"},
		{"no chart", Options{Root: t.TempDir(), OutDir: t.TempDir()}, "chart"},
		{"unknown image", Options{Root: root, OutDir: t.TempDir(), Images: []string{"weft-x"}}, "unknown image"},
		{"bad version", Options{Root: root, OutDir: t.TempDir(), Version: "1 2"}, "no spaces"},
		{"unknown platform", Options{Root: root, OutDir: t.TempDir(), Platforms: []ociimage.Platform{parse(t, "linux/s390x")}}, "not one this builder knows"},
		{"platform twice", Options{Root: root, OutDir: t.TempDir(), Platforms: []ociimage.Platform{amd64, amd64}}, "given twice"},
	} {
		if _, err := Build(context.Background(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// The extension charts' default images, as the chart templates name them.
func TestReadExtensionImages(t *testing.T) {
	for _, tc := range []struct {
		chart string
		read  func(string) (string, error)
		want  string // the repository, before the tag
	}{
		{"weft-viz", readVizPrometheus, "ghcr.io/weftmesh/weft-prometheus:"},
		{"weft-jaeger", readJaegerImage, "ghcr.io/weftmesh/weft-jaeger:"},
	} {
		got, err := tc.read(filepath.Join(repoRoot(t), "charts", tc.chart))
		if err != nil || !strings.HasPrefix(got, tc.want) || strings.HasSuffix(got, ":") {
			t.Errorf("%s: got %q, %v; want %s<version>", tc.chart, got, err, tc.want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("appVersion: \"\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "values.yaml"), []byte("jaeger: {image: {name: x}}\n"), 0o644)
	if got, err := readJaegerImage(dir); err == nil {
		t.Errorf("a chart without a version: got %q, want an error", got)
	}
}
