// Package imagebuild builds Weft's container images — weft-controller,
// weft-proxy (with weft-await), weft-proxy-init (with Debian's iptables)
// and weft-prometheus (Debian's Prometheus, for the viz extension) — for
// linux/amd64, linux/arm64 and linux/arm/v7, and weft-jaeger (Jaeger built
// from its Go module, for the jaeger extension) for linux/amd64, without
// Docker: Go cross-compiles the binaries, Debian's .deb files give iptables
// and Prometheus for each architecture, and package ociimage writes one OCI
// archive per image. Images are named as the weft-control-plane, weft-viz
// and weft-jaeger charts' defaults name them, so a helm install without
// image values runs exactly these images; two builds of the same commit
// give the same digests.
package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/weftmesh/weft/internal/ociimage"
)

// Platforms are the platforms every image is built for by default.
var Platforms = []ociimage.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
}

// Names of the images, which are also the archives' base names.
const (
	Controller = "weft-controller"
	Proxy      = "weft-proxy"
	ProxyInit  = "weft-proxy-init"
	Prometheus = "weft-prometheus"
	Jaeger     = "weft-jaeger"
)

// spec is one image: the commands it carries (each at /<name>), the
// Debian files it carries, a third-party Go command it carries (at
// /<bin>), and its entrypoint (default: the first command).
type spec struct {
	name       string
	commands   []string
	debian     *debianSet
	tool       *goTool
	entrypoint []string
}

// platforms are the platforms of want that s is built for: all of them,
// except for a tool built for fewer.
func (s spec) platforms(want []ociimage.Platform) []ociimage.Platform {
	if s.tool == nil {
		return want
	}
	return s.tool.toolPlatforms(want)
}

var specs = []spec{
	{name: Controller, commands: []string{"weft-controller"}},
	{name: Proxy, commands: []string{"weft-proxy", "weft-await"}},
	{name: ProxyInit, commands: []string{"weft-proxy-init"}, debian: iptablesSet},
	{name: Prometheus, debian: prometheusSet, entrypoint: []string{"/usr/bin/prometheus"}},
	{name: Jaeger, tool: jaegerTool, entrypoint: []string{"/jaeger"}},
}

// Names lists every image Build knows.
func Names() []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.name
	}
	return out
}

// Options say what to build and where.
type Options struct {
	Root      string              // the repository (where go.mod is)
	OutDir    string              // the archives go here, one <name>.tar per image
	Platforms []ociimage.Platform // default: Platforms
	Images    []string            // default: every image
	Version   string              // linked into the binaries; default: the chart's version (the tag)
	CacheDir  string              // Debian packages are kept here; default $HOME/.cache/weft
	Log       *slog.Logger        // progress; nil discards
}

// Result is one archive written.
type Result struct {
	Name    string // weft-proxy
	Path    string // bin/images/weft-proxy.tar
	Summary ociimage.Summary
}

// Build compiles the binaries for every platform, fetches Debian's iptables
// for the init image, writes the archives, and reads each back to check it
// holds every platform under the chart's name.
func Build(ctx context.Context, o Options) ([]Result, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Root == "" || o.OutDir == "" {
		return nil, errors.New("imagebuild: Root and OutDir are required")
	}
	if len(o.Platforms) == 0 {
		o.Platforms = Platforms
	}
	if o.CacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("imagebuild: no cache directory: %w", err)
		}
		o.CacheDir = filepath.Join(home, ".cache", "weft")
	}
	chart, err := ReadChart(filepath.Join(o.Root, "charts", "weft-control-plane"))
	if err != nil {
		return nil, err
	}
	if chart.Refs[Prometheus], err = readVizPrometheus(filepath.Join(o.Root, "charts", "weft-viz")); err != nil {
		return nil, err
	}
	if chart.Refs[Jaeger], err = readJaegerImage(filepath.Join(o.Root, "charts", "weft-jaeger")); err != nil {
		return nil, err
	}
	if o.Version == "" {
		o.Version = chart.Version
	}
	todo, err := selectSpecs(o.Images)
	if err != nil {
		return nil, err
	}
	// An image built for none of the platforms asked for is left out.
	todo = slices.DeleteFunc(todo, func(s spec) bool {
		if len(s.platforms(o.Platforms)) > 0 {
			return false
		}
		o.Log.Info("skipped: built for other platforms only", "image", s.name)
		return true
	})
	if strings.ContainsAny(o.Version, " \t\n'\"") {
		return nil, fmt.Errorf("imagebuild: version %q: no spaces or quotes (it is linked in with -ldflags -X)", o.Version)
	}
	for i, p := range o.Platforms {
		if _, err := goEnv(p); err != nil {
			return nil, err
		}
		if slices.Contains(o.Platforms[:i], p) {
			return nil, fmt.Errorf("imagebuild: platform %s given twice", p)
		}
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	work, err := os.MkdirTemp("", "weft-images-")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	defer os.RemoveAll(work)

	// Debian's packages download while Go compiles, one set after the
	// other (each set's platforms at once).
	var sets []*debianSet
	for _, s := range todo {
		if s.debian != nil && !slices.Contains(sets, s.debian) {
			sets = append(sets, s.debian)
		}
	}
	type debianResult struct {
		files map[*debianSet]map[ociimage.Platform][]ociimage.File
		err   error
	}
	debianDone := make(chan debianResult, 1)
	go func() {
		r := debianResult{files: map[*debianSet]map[ociimage.Platform][]ociimage.File{}}
		for _, set := range sets {
			files, err := debianForPlatforms(ctx, set, o.CacheDir, filepath.Join(work, "debian"), o.Platforms, o.Log)
			if err != nil {
				r.err = err
				break
			}
			r.files[set] = files
		}
		debianDone <- r
	}()

	var commands []string
	for _, s := range todo {
		commands = append(commands, s.commands...)
	}
	bins := map[ociimage.Platform]string{}
	var compileErr error
	for _, p := range o.Platforms {
		if len(commands) == 0 {
			break
		}
		dir := filepath.Join(work, "bin", strings.ReplaceAll(p.String(), "/", "-"))
		start := time.Now()
		if err := compile(ctx, o.Root, dir, p, o.Version, commands); err != nil {
			compileErr = err
			break
		}
		o.Log.Info("compiled", "platform", p.String(), "commands", strings.Join(commands, " "), "took", time.Since(start).Round(100*time.Millisecond))
		bins[p] = dir
	}
	// Third-party commands, each from its own module, cached.
	tools := map[*goTool]map[ociimage.Platform]string{}
	for _, s := range todo {
		if s.tool == nil || compileErr != nil {
			continue
		}
		tools[s.tool] = map[ociimage.Platform]string{}
		for _, p := range s.platforms(o.Platforms) {
			bin, err := s.tool.build(ctx, o.Root, o.CacheDir, p, o.Log)
			if err != nil {
				compileErr = err
				break
			}
			tools[s.tool][p] = bin
		}
	}
	deb := <-debianDone
	if compileErr != nil {
		return nil, compileErr
	}
	if deb.err != nil {
		return nil, deb.err
	}

	// One archive per image, written concurrently (gzip is most of it).
	results := make([]Result, len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, s := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = writeImage(s, chart.Refs[s.name], o, bins, deb.files[s.debian], tools[s.tool])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return results, nil
}

// writeImage writes one image's archive and reads it back.
func writeImage(s spec, ref string, o Options, bins map[ociimage.Platform]string, debian map[ociimage.Platform][]ociimage.File,
	tool map[ociimage.Platform]string) (Result, error) {
	var images []ociimage.Image
	platforms := s.platforms(o.Platforms)
	for _, p := range platforms {
		entry := s.entrypoint
		if entry == nil {
			entry = []string{"/" + s.commands[0]}
		}
		img := ociimage.Image{Platform: p, Entrypoint: entry,
			Labels: map[string]string{"org.opencontainers.image.title": s.name, "org.opencontainers.image.version": o.Version}}
		for _, c := range s.commands {
			img.Files = append(img.Files, ociimage.File{Path: "/" + c, Source: filepath.Join(bins[p], c)})
		}
		img.Files = append(img.Files, debian[p]...)
		if s.tool != nil {
			img.Files = append(img.Files, ociimage.File{Path: "/" + s.tool.bin, Source: tool[p]})
		}
		images = append(images, img)
	}
	path := filepath.Join(o.OutDir, s.name+".tar")
	sum, err := ociimage.WriteFile(path, ref, images)
	if err != nil {
		return Result{}, fmt.Errorf("imagebuild: %w", err)
	}
	if err := verify(path, ref, platforms); err != nil {
		return Result{}, err
	}
	o.Log.Info("wrote", "image", ref, "archive", path, "digest", sum.Digest)
	return Result{Name: s.name, Path: path, Summary: sum}, nil
}

func selectSpecs(names []string) ([]spec, error) {
	if len(names) == 0 {
		return slices.Clone(specs), nil // Build filters its list in place
	}
	var out []spec
	for _, n := range names {
		i := slices.IndexFunc(specs, func(s spec) bool { return s.name == n })
		if i < 0 {
			return nil, fmt.Errorf("imagebuild: unknown image %q (want one of %s)", n, strings.Join(Names(), ", "))
		}
		if !slices.ContainsFunc(out, func(s spec) bool { return s.name == n }) {
			out = append(out, specs[i])
		}
	}
	return out, nil
}

// verify reads an archive back: the chart's name, every platform.
func verify(path, ref string, platforms []ociimage.Platform) error {
	a, err := ociimage.ReadFile(path)
	if err != nil {
		return fmt.Errorf("imagebuild: reading back: %w", err)
	}
	if a.Ref != ref {
		return fmt.Errorf("imagebuild: %s is named %q, want %q", path, a.Ref, ref)
	}
	if got := a.Platforms(); !slices.Equal(got, platforms) {
		return fmt.Errorf("imagebuild: %s holds %v, want %v", path, got, platforms)
	}
	return nil
}

// WriteReport prints each image's size per platform: the gzip'd layer (what
// a node pulls) and the unpacked files.
func WriteReport(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tPLATFORM\tCOMPRESSED\tUNPACKED\tMANIFEST")
	for _, r := range results {
		for _, p := range r.Summary.Platforms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Summary.Ref, p.Platform, mib(p.Compressed), mib(p.Uncompressed), shortDigest(p.Manifest))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if _, err := fmt.Fprintf(w, "%s  %s (index)\n", r.Path, r.Summary.Digest); err != nil {
			return err
		}
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

// FindRoot walks up from dir to the directory holding go.mod.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}
