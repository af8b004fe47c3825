package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrNotLayout is returned by Read for a tar that is not an OCI layout
// (for example a docker-archive).
var ErrNotLayout = errors.New("not an OCI image layout (no oci-layout or index.json)")

// Archive is an OCI layout archive read into memory, with one named image:
// an image index over platforms, or a single manifest.
type Archive struct {
	Ref       string // the image's name (containerd's annotation, else ref.name)
	Digest    string // the digest index.json points at
	MediaType string // index or manifest
	Manifests []PlatformManifest
	blobs     map[string][]byte
}

// PlatformManifest is one platform's manifest in an archive.
type PlatformManifest struct {
	Platform Platform
	Digest   string
	Manifest Manifest
	Config   Config
}

// ReadFile reads the archive at path.
func ReadFile(path string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// maxBlob bounds one blob read into memory.
const maxBlob = 1 << 30

// Read reads an OCI layout archive, checking every blob against its digest
// and every descriptor against its blob.
func Read(r io.Reader) (*Archive, error) {
	tr := tar.NewReader(r)
	a := &Archive{blobs: map[string][]byte{}}
	var indexJSON []byte
	layout := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > maxBlob {
			return nil, fmt.Errorf("%s: %d bytes, more than this reader takes", h.Name, h.Size)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		switch {
		case name == "oci-layout":
			layout = true
		case name == "index.json":
			indexJSON = b
		case strings.HasPrefix(name, "blobs/sha256/"):
			hexDigest := strings.TrimPrefix(name, "blobs/sha256/")
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != hexDigest {
				return nil, fmt.Errorf("%s: content does not match its digest", name)
			}
			a.blobs["sha256:"+hexDigest] = b
		}
	}
	if !layout || indexJSON == nil {
		return nil, ErrNotLayout
	}
	var top Index
	if err := json.Unmarshal(indexJSON, &top); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(top.Manifests) != 1 {
		return nil, fmt.Errorf("index.json lists %d images; this reader takes archives of one image", len(top.Manifests))
	}
	d := top.Manifests[0]
	a.Ref = d.Annotations[AnnotationContainerName]
	if a.Ref == "" {
		a.Ref = d.Annotations[AnnotationRefName]
	}
	a.Digest, a.MediaType = d.Digest, d.MediaType
	switch d.MediaType {
	case MediaTypeIndex:
		var idx Index
		if err := a.decode(d, &idx); err != nil {
			return nil, err
		}
		for _, md := range idx.Manifests {
			if md.MediaType != MediaTypeManifest {
				return nil, fmt.Errorf("image index %s: entry %s is %s, not an image manifest", d.Digest, md.Digest, md.MediaType)
			}
			pm, err := a.readManifest(md)
			if err != nil {
				return nil, err
			}
			if md.Platform == nil || *md.Platform != pm.Platform {
				return nil, fmt.Errorf("manifest %s: the index says platform %v, its config %s", md.Digest, md.Platform, pm.Platform)
			}
			a.Manifests = append(a.Manifests, pm)
		}
	case MediaTypeManifest:
		pm, err := a.readManifest(d)
		if err != nil {
			return nil, err
		}
		a.Manifests = append(a.Manifests, pm)
	default:
		return nil, fmt.Errorf("index.json points at %q, want an image index or manifest", d.MediaType)
	}
	return a, nil
}

// decode reads the blob d points at as JSON, checking its size.
func (a *Archive) decode(d Descriptor, v any) error {
	b, ok := a.blobs[d.Digest]
	if !ok {
		return fmt.Errorf("blob %s is missing", d.Digest)
	}
	if int64(len(b)) != d.Size {
		return fmt.Errorf("blob %s: %d bytes, its descriptor says %d", d.Digest, len(b), d.Size)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

func (a *Archive) readManifest(d Descriptor) (PlatformManifest, error) {
	pm := PlatformManifest{Digest: d.Digest}
	if err := a.decode(d, &pm.Manifest); err != nil {
		return pm, err
	}
	if err := a.decode(pm.Manifest.Config, &pm.Config); err != nil {
		return pm, err
	}
	if len(pm.Config.RootFS.DiffIDs) != len(pm.Manifest.Layers) {
		return pm, fmt.Errorf("manifest %s: %d layers, %d diff IDs", d.Digest, len(pm.Manifest.Layers), len(pm.Config.RootFS.DiffIDs))
	}
	for _, l := range pm.Manifest.Layers {
		b, ok := a.blobs[l.Digest]
		if !ok {
			return pm, fmt.Errorf("manifest %s: layer %s is missing", d.Digest, l.Digest)
		}
		if int64(len(b)) != l.Size {
			return pm, fmt.Errorf("layer %s: %d bytes, its descriptor says %d", l.Digest, len(b), l.Size)
		}
	}
	pm.Platform = Platform{OS: pm.Config.OS, Architecture: pm.Config.Architecture, Variant: pm.Config.Variant}
	return pm, nil
}

// Platforms lists the archive's platforms in index order.
func (a *Archive) Platforms() []Platform {
	out := make([]Platform, 0, len(a.Manifests))
	for _, m := range a.Manifests {
		out = append(out, m.Platform)
	}
	return out
}

// Find returns the manifest of platform p.
func (a *Archive) Find(p Platform) (PlatformManifest, error) {
	for _, m := range a.Manifests {
		if m.Platform == p {
			return m, nil
		}
	}
	return PlatformManifest{}, fmt.Errorf("image %s has no %s manifest (it has %v)", a.Ref, p, a.Platforms())
}

// Extract writes platform p's layers into dir, which should be empty. It
// refuses entries that would land outside dir, hard links and whiteouts.
func (a *Archive) Extract(p Platform, dir string) error {
	m, err := a.Find(p)
	if err != nil {
		return err
	}
	for _, l := range m.Manifest.Layers {
		if l.MediaType != MediaTypeLayer {
			return fmt.Errorf("layer %s: media type %s, want %s", l.Digest, l.MediaType, MediaTypeLayer)
		}
		if err := extractLayer(a.blobs[l.Digest], dir); err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	return nil
}

func extractLayer(layer []byte, dir string) error {
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		if strings.HasPrefix(path.Base(name), ".wh.") {
			return fmt.Errorf("%s: whiteouts are not supported", h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := noSymlinkParents(dir, name); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry type %q is not supported", h.Name, h.Typeflag)
		}
	}
}

// noSymlinkParents fails when a directory on the way to name (below dir) is
// a symbolic link, which could point outside dir.
func noSymlinkParents(dir, name string) error {
	cur := dir
	parts := strings.Split(strings.TrimPrefix(path.Dir(name), "/"), "/")
	for _, part := range parts {
		if part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s: its parent %s is a symbolic link", name, cur)
		}
	}
	return nil
}
