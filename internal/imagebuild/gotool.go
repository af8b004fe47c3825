package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/ociimage"
)

// goTool is a third-party command built from its own Go module, which is
// kept in a module of its own under tools/ (a go.mod with a tool
// directive) so that its dependency tree stays out of Weft's go.mod. Its
// binary is cached under the cache directory, keyed by that module's
// go.mod and go.sum, the Go version and the platform: a warm build copies
// it.
type goTool struct {
	dir       string              // the tool module, relative to the repository: tools/jaeger
	pkg       string              // the command's package: github.com/jaegertracing/jaeger/cmd/jaeger
	bin       string              // the binary's name in the image (/bin)
	platforms []ociimage.Platform // the only platforms it is built for
}

// jaegerTool is Jaeger's all-in-one (v2, an OpenTelemetry Collector
// distribution: OTLP receivers, in-memory storage, the query API and UI).
// One cold build takes most of an hour of CPU, so it is built for the e2e
// platform, linux/amd64, only (docs/tracing.md).
var jaegerTool = &goTool{
	dir:       "tools/jaeger",
	pkg:       "github.com/jaegertracing/jaeger/cmd/jaeger",
	bin:       "jaeger",
	platforms: []ociimage.Platform{{OS: "linux", Architecture: "amd64"}},
}

// toolPlatforms are the platforms of want that t is built for, in want's
// order.
func (t *goTool) toolPlatforms(want []ociimage.Platform) []ociimage.Platform {
	var out []ociimage.Platform
	for _, p := range want {
		if slices.Contains(t.platforms, p) {
			out = append(out, p)
		}
	}
	return out
}

// cacheKey identifies a build of t: its module's go.mod and go.sum, the
// Go toolchain's version and the platform's environment.
func (t *goTool) cacheKey(ctx context.Context, root string, p ociimage.Platform) (string, error) {
	tg, err := goEnv(p)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, t.dir, f))
		if err != nil {
			return "", fmt.Errorf("imagebuild: tool module %s: %w", t.dir, err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	cmd := exec.CommandContext(ctx, goCommand(), "env", "GOVERSION")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("imagebuild: go env GOVERSION: %w", err)
	}
	fmt.Fprintf(h, "%s\n%s\n%s\n", strings.TrimSpace(string(out)), t.pkg, strings.Join(tg.env, " "))
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// build returns the path of t's binary for p, building it into the cache
// unless an identical build is there.
func (t *goTool) build(ctx context.Context, root, cacheDir string, p ociimage.Platform, log *slog.Logger) (string, error) {
	key, err := t.cacheKey(ctx, root, p)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cacheDir, "tools", t.bin+"-"+key, strings.ReplaceAll(p.String(), "/", "-"))
	bin := filepath.Join(dir, t.bin)
	tg, _ := goEnv(p)
	if err := checkELF(bin, tg.machine); err == nil {
		log.Info("cached", "command", t.pkg, "platform", p.String(), "binary", bin)
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("imagebuild: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("imagebuild: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	log.Info("compiling (a cold build of a large module takes many minutes)", "command", t.pkg, "platform", p.String())
	cmd := exec.CommandContext(ctx, goCommand(), "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", filepath.Join(tmp, t.bin), t.pkg)
	cmd.Dir = filepath.Join(root, t.dir)
	cmd.Env = append(os.Environ(), tg.env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("imagebuild: go build %s for %s: %w\n%s", t.pkg, p, err, strings.TrimSpace(stderr.String()))
	}
	if err := checkELF(filepath.Join(tmp, t.bin), tg.machine); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(tmp, t.bin), bin); err != nil {
		return "", fmt.Errorf("imagebuild: %w", err)
	}
	log.Info("compiled", "command", t.pkg, "platform", p.String(), "took", time.Since(start).Round(100*time.Millisecond), "binary", bin)
	return bin, nil
}
