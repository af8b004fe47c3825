// Command build-images is `make images`: it builds Weft's container images
// (weft-controller, weft-proxy, weft-proxy-init, weft-prometheus) for
// linux/amd64, linux/arm64 and linux/arm/v7, and weft-jaeger for
// linux/amd64, into OCI archives, one per image, named as the charts'
// defaults name them, and prints each
// image's size per platform. It is a build tool, not a product binary
// (those are under cmd/ and ship with make build); the work is done by
// package internal/imagebuild. See docs/install.md.
//
//	go run ./tools/build-images [-out bin/images] [-platforms linux/amd64,...] [-images weft-proxy,...]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/imagebuild"
	"github.com/weftmesh/weft/internal/ociimage"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], log); err != nil {
		fmt.Fprintf(os.Stderr, "build-images: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("build-images", flag.ContinueOnError)
	out := fs.String("out", "bin/images", "directory the archives are written to")
	platforms := fs.String("platforms", joinPlatforms(imagebuild.Platforms), "comma-separated platforms")
	images := fs.String("images", strings.Join(imagebuild.Names(), ","), "comma-separated images to build")
	version := fs.String("version", "", "version linked into the binaries (default: the chart's, which is the images' tag)")
	cache := fs.String("cache", "", "where Debian's packages are kept (default $HOME/.cache/weft)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var ps []ociimage.Platform
	for _, s := range splitList(*platforms) {
		p, err := ociimage.ParsePlatform(s)
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := imagebuild.FindRoot(wd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	results, err := imagebuild.Build(ctx, imagebuild.Options{Root: root, OutDir: *out, Platforms: ps,
		Images: splitList(*images), Version: *version, CacheDir: *cache, Log: log})
	if err != nil {
		return err
	}
	if err := imagebuild.WriteReport(os.Stdout, results); err != nil {
		return err
	}
	log.Info("images built", "took", time.Since(start).Round(100*time.Millisecond))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func joinPlatforms(ps []ociimage.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
