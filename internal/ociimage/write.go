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
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Media types and annotations of the OCI image specification, and the one
// containerd reads an image's full name from.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	AnnotationRefName       = "org.opencontainers.image.ref.name"
	AnnotationContainerName = "io.containerd.image.name"
)

// DefaultPath is the PATH images get unless they set their own.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// epoch dates every entry: no build time leaks into a digest.
var epoch = time.Unix(0, 0).UTC()

// File is one entry of an image's layer: a regular file from Source (a path
// on this machine) or Data, or a symbolic link to Link. Exactly one of the
// three is set. Parent directories are added as needed.
type File struct {
	Path   string      // absolute path inside the image
	Source string      // copy this file's content
	Data   []byte      // or use this content
	Link   string      // or make a symbolic link to this target
	Mode   fs.FileMode // permission bits of a regular file; 0 means 0o755
}

// Image is one platform's image: a single layer of Files and the config.
type Image struct {
	Platform   Platform
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string // nil means [DefaultPath]
	User       string
	WorkingDir string
	Labels     map[string]string
}

// Summary tells what Write wrote.
type Summary struct {
	Ref       string
	Digest    string // the image index's digest, what a registry shows for Ref
	Platforms []PlatformSummary
}

// PlatformSummary is one platform's manifest and layer sizes.
type PlatformSummary struct {
	Platform     Platform
	Manifest     string // the manifest's digest
	Compressed   int64  // the gzip'd layer, what a node pulls
	Uncompressed int64  // the layer's tar
}

// Descriptor points at a blob, as in the OCI specification.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Index is an OCI image index (also the layout's index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Config is the part of an OCI image config this package writes and reads.
type Config struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Variant      string          `json:"variant,omitempty"`
	Config       ContainerConfig `json:"config"`
	RootFS       RootFS          `json:"rootfs"`
}

// ContainerConfig is how a container of the image runs.
type ContainerConfig struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// RootFS lists the layers' uncompressed digests.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// refPattern is the OCI layout's grammar for ref.name, which a full
// reference such as ghcr.io/weftmesh/weft-proxy:dev satisfies.
var refPattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)

// WriteFile writes the archive to path through a temporary file beside it,
// so a failed build never leaves a truncated archive under the final name.
func WriteFile(path, ref string, images []Image) (Summary, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return Summary{}, fmt.Errorf("image %s: %w", ref, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	sum, err := Write(tmp, ref, images)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("image %s: %w", ref, cerr)
	}
	if err != nil {
		return Summary{}, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return Summary{}, fmt.Errorf("image %s: %w", ref, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Summary{}, fmt.Errorf("image %s: %w", ref, err)
	}
	return sum, nil
}

// Write writes an OCI layout archive to w: one image index named ref (a
// full reference, e.g. ghcr.io/weftmesh/weft-proxy:dev) over one manifest
// per image, in the order given.
func Write(w io.Writer, ref string, images []Image) (Summary, error) {
	if !refPattern.MatchString(ref) {
		return Summary{}, fmt.Errorf("image reference %q is not a valid OCI reference name", ref)
	}
	if len(images) == 0 {
		return Summary{}, fmt.Errorf("image %s: no platforms", ref)
	}
	blobs := map[string][]byte{}
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d
	}
	sum := Summary{Ref: ref}
	index := Index{SchemaVersion: 2, MediaType: MediaTypeIndex}
	seen := map[string]bool{}
	for _, img := range images {
		p := img.Platform
		if p.OS == "" || p.Architecture == "" {
			return Summary{}, fmt.Errorf("image %s: a platform without os or architecture", ref)
		}
		if seen[p.String()] {
			return Summary{}, fmt.Errorf("image %s: platform %s given twice", ref, p)
		}
		seen[p.String()] = true
		layer, diffID, rawSize, err := buildLayer(img.Files)
		if err != nil {
			return Summary{}, fmt.Errorf("image %s (%s): %w", ref, p, err)
		}
		env := img.Env
		if env == nil {
			env = []string{DefaultPath}
		}
		config, err := json.Marshal(Config{
			Architecture: p.Architecture, OS: p.OS, Variant: p.Variant,
			Config: ContainerConfig{User: img.User, Env: env, Entrypoint: img.Entrypoint, Cmd: img.Cmd, WorkingDir: img.WorkingDir, Labels: img.Labels},
			RootFS: RootFS{Type: "layers", DiffIDs: []string{diffID}},
		})
		if err != nil {
			return Summary{}, fmt.Errorf("image %s (%s): config: %w", ref, p, err)
		}
		manifest, err := json.Marshal(Manifest{
			SchemaVersion: 2, MediaType: MediaTypeManifest,
			Config: Descriptor{MediaType: MediaTypeConfig, Digest: put(config), Size: int64(len(config))},
			Layers: []Descriptor{{MediaType: MediaTypeLayer, Digest: put(layer), Size: int64(len(layer))}},
		})
		if err != nil {
			return Summary{}, fmt.Errorf("image %s (%s): manifest: %w", ref, p, err)
		}
		md := put(manifest)
		pc := p
		index.Manifests = append(index.Manifests, Descriptor{MediaType: MediaTypeManifest, Digest: md, Size: int64(len(manifest)), Platform: &pc})
		sum.Platforms = append(sum.Platforms, PlatformSummary{Platform: p, Manifest: md, Compressed: int64(len(layer)), Uncompressed: rawSize})
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return Summary{}, fmt.Errorf("image %s: index: %w", ref, err)
	}
	sum.Digest = put(indexJSON)
	top, err := json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{{
		MediaType: MediaTypeIndex, Digest: sum.Digest, Size: int64(len(indexJSON)),
		Annotations: map[string]string{AnnotationContainerName: ref, AnnotationRefName: ref},
	}}})
	if err != nil {
		return Summary{}, fmt.Errorf("image %s: index.json: %w", ref, err)
	}
	if err := writeLayout(w, top, blobs); err != nil {
		return Summary{}, fmt.Errorf("image %s: %w", ref, err)
	}
	return sum, nil
}

// writeLayout writes the layout's files as a tar, blobs in digest order.
func writeLayout(w io.Writer, indexJSON []byte, blobs map[string][]byte) error {
	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
	}
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := file("index.json", indexJSON); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// entry is one tar entry of a layer.
type entry struct {
	name string // relative, no trailing slash
	file File
	dir  bool
}

// buildLayer returns the gzip'd layer, its diff ID (the tar's digest) and
// the tar's size.
func buildLayer(files []File) (layer []byte, diffID string, size int64, err error) {
	entries, err := layerEntries(files)
	if err != nil {
		return nil, "", 0, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, "", 0, err
	}
	raw := sha256.New()
	counter := &countingWriter{}
	tw := tar.NewWriter(io.MultiWriter(zw, raw, counter))
	for _, e := range entries {
		if err := writeEntry(tw, e); err != nil {
			return nil, "", 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", 0, err
	}
	if err := zw.Close(); err != nil {
		return nil, "", 0, err
	}
	return gz.Bytes(), "sha256:" + hex.EncodeToString(raw.Sum(nil)), counter.n, nil
}

// layerEntries checks the files and adds their parent directories, sorted.
func layerEntries(files []File) ([]entry, error) {
	byName := map[string]entry{}
	for _, f := range files {
		name, err := cleanImagePath(f.Path)
		if err != nil {
			return nil, err
		}
		set := 0
		for _, ok := range []bool{f.Source != "", f.Data != nil, f.Link != ""} {
			if ok {
				set++
			}
		}
		if set != 1 {
			return nil, fmt.Errorf("%s: give exactly one of a source file, data or a link target", f.Path)
		}
		if prev, dup := byName[name]; dup && !prev.dir {
			return nil, fmt.Errorf("%s: given twice", f.Path)
		} else if dup {
			return nil, fmt.Errorf("%s: both a directory and a file", f.Path)
		}
		byName[name] = entry{name: name, file: f}
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if prev, ok := byName[d]; ok && !prev.dir {
				return nil, fmt.Errorf("%s: its parent %s is a file", f.Path, "/"+d)
			}
			byName[d] = entry{name: d, dir: true}
		}
	}
	entries := make([]entry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

// cleanImagePath turns /usr/sbin/x into usr/sbin/x, refusing anything that
// is not a clean absolute path below the root.
func cleanImagePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("image path %q: want a clean absolute path such as /bin/app", p)
	}
	return strings.TrimPrefix(p, "/"), nil
}

func writeEntry(tw *tar.Writer, e entry) error {
	h := &tar.Header{Name: e.name, ModTime: epoch}
	switch {
	case e.dir:
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, e.name+"/", 0o755
		return tw.WriteHeader(h)
	case e.file.Link != "":
		h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.file.Link, 0o777
		return tw.WriteHeader(h)
	}
	data := e.file.Data
	if e.file.Source != "" {
		b, err := os.ReadFile(e.file.Source)
		if err != nil {
			return fmt.Errorf("%s: %w", e.file.Path, err)
		}
		data = b
	}
	mode := e.file.Mode.Perm()
	if mode == 0 {
		mode = 0o755
	}
	if e.file.Mode&^fs.ModePerm != 0 {
		return errors.New(e.file.Path + ": only permission bits may be set in Mode")
	}
	h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(mode), int64(len(data))
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
