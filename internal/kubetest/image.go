package kubetest

import (
	"sort"

	"github.com/weftmesh/weft/internal/ociimage"
)

// Image describes a single-layer container image of static binaries built
// for this machine's platform.
type Image struct {
	Tag        string            // e.g. "weft.local/testapp:dev"
	Files      map[string]string // path in the image → file on this machine
	Entrypoint []string
}

// WriteArchive writes img as an OCI archive (package ociimage, the writer
// make images uses) for this machine's platform, the format `ctr -n k8s.io
// images import` and clusterctl load read; no Docker needed.
func (img Image) WriteArchive(path string) error {
	paths := make([]string, 0, len(img.Files))
	for p := range img.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	files := make([]ociimage.File, 0, len(paths))
	for _, p := range paths {
		files = append(files, ociimage.File{Path: "/" + trimSlash(p), Source: img.Files[p]})
	}
	_, err := ociimage.WriteFile(path, img.Tag, []ociimage.Image{{Platform: ociimage.HostPlatform(), Files: files, Entrypoint: img.Entrypoint}})
	return err // it names the image
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}
