//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/weftmesh/weft/internal/imagebuild"
	"github.com/weftmesh/weft/internal/kubetest"
)

// The mesh runs the images make images builds (package imagebuild), named
// as the weft-control-plane chart names them by default: the charts and
// weft install are used without image values, as users use them.
// clientImage is the suite's own: testapp with weft-await beside it.
const clientImage = "weft.local/testapp-await:dev"

var images struct {
	once sync.Once
	err  error
}

// imageVersion is the images' tag, the chart's version.
func imageVersion(t *testing.T) string {
	t.Helper()
	c, err := imagebuild.ReadChart("../../charts/weft-control-plane")
	if err != nil {
		t.Fatal(err)
	}
	return c.Version
}

// buildImages builds the images (once per run) and loads them into the
// cluster: clusterctl load picks the node's platform from each archive.
func buildImages(t *testing.T) {
	t.Helper()
	images.once.Do(func() { images.err = buildAndLoad(t) })
	if images.err != nil {
		t.Fatal(images.err)
	}
}

func buildAndLoad(t *testing.T) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "weft-e2e-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var progress bytes.Buffer
	results, err := imagebuild.Build(context.Background(), imagebuild.Options{Root: root, OutDir: dir,
		Log: slog.New(slog.NewTextHandler(&progress, nil))})
	t.Log(progress.String())
	if err != nil {
		return err
	}
	var report strings.Builder
	imagebuild.WriteReport(&report, results)
	t.Log("\n" + report.String())
	tars := make([]string, 0, len(results)+1)
	for _, r := range results {
		tars = append(tars, r.Path)
	}

	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./test/testapp", "./cmd/weft-await")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	client := filepath.Join(dir, "testapp-await.tar")
	img := kubetest.Image{Tag: clientImage, Entrypoint: []string{"/testapp"},
		Files: map[string]string{"/testapp": filepath.Join(dir, "testapp"), "/weft-await": filepath.Join(dir, "weft-await")}}
	if err := img.WriteArchive(client); err != nil {
		return err
	}
	tars = append(tars, client)

	load := exec.Command("go", append([]string{"run", "./test/cluster/clusterctl", "load"}, tars...)...)
	load.Dir = root
	out, err := load.CombinedOutput()
	t.Logf("clusterctl load:\n%s", out)
	if err != nil {
		return fmt.Errorf("loading images: %v\n%s", err, out)
	}
	return nil
}
