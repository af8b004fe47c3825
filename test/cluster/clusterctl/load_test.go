package main

import (
	"archive/tar"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/ociimage"
)

func TestImportArgs(t *testing.T) {
	dir := t.TempDir()
	amd64, arm64 := ociimage.Platform{OS: "linux", Architecture: "amd64"}, ociimage.Platform{OS: "linux", Architecture: "arm64"}
	multi := filepath.Join(dir, "multi.tar")
	img := func(p ociimage.Platform) ociimage.Image {
		return ociimage.Image{Platform: p, Files: []ociimage.File{{Path: "/app", Data: []byte(p.String())}}, Entrypoint: []string{"/app"}}
	}
	if _, err := ociimage.WriteFile(multi, "ghcr.io/weftmesh/weft-proxy:dev", []ociimage.Image{img(amd64), img(arm64)}); err != nil {
		t.Fatal(err)
	}
	docker := filepath.Join(dir, "docker.tar")
	f, _ := os.Create(docker)
	tw := tar.NewWriter(f)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("[]"))
	tw.Close()
	f.Close()
	for _, tc := range []struct {
		name     string
		path     string
		node     ociimage.Platform
		wantArgs []string
		wantErr  string
	}{
		{name: "the node's platform of an index", path: multi, node: arm64, wantArgs: []string{"--platform", "linux/arm64", multi}},
		{name: "amd64 node", path: multi, node: amd64, wantArgs: []string{"--platform", "linux/amd64", multi}},
		{name: "a platform the archive lacks", path: multi, node: ociimage.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, wantErr: "no linux/arm/v7 manifest"},
		{name: "docker-archive as it is", path: docker, node: amd64, wantArgs: []string{docker}},
		{name: "missing file", path: filepath.Join(dir, "nope.tar"), node: amd64, wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, _, err := importArgs(tc.path, tc.node)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(args, tc.wantArgs) {
				t.Fatalf("args %v, %v; want %v", args, err, tc.wantArgs)
			}
		})
	}
}
