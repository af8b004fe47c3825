package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var (
	amd64 = Platform{OS: "linux", Architecture: "amd64"}
	arm64 = Platform{OS: "linux", Architecture: "arm64"}
	armv7 = Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Platform
		wantErr bool
	}{
		{in: "linux/amd64", want: amd64},
		{in: "linux/arm64", want: arm64},
		{in: "linux/arm/v7", want: armv7},
		{in: "linux", wantErr: true},
		{in: "linux//v7", wantErr: true},
		{in: "linux/arm/v7/x", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := ParsePlatform(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

// sample is a three-platform image whose files differ per platform.
func sample(t *testing.T) []Image {
	t.Helper()
	src := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(src, []byte("binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	var imgs []Image
	for _, p := range []Platform{amd64, arm64, armv7} {
		imgs = append(imgs, Image{Platform: p, Entrypoint: []string{"/app"}, Files: []File{
			{Path: "/app", Source: src},
			{Path: "/usr/sbin/tool-multi", Data: []byte("tool for " + p.String())},
			{Path: "/usr/sbin/tool", Link: "tool-multi"},
			{Path: "/etc/conf", Data: []byte("x"), Mode: 0o644},
		}})
	}
	return imgs
}

func write(t *testing.T, ref string, imgs []Image) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := Write(&buf, ref, imgs)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

func TestRoundTrip(t *testing.T) {
	const ref = "ghcr.io/weftmesh/weft-proxy:dev"
	b, sum := write(t, ref, sample(t))
	a, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if a.Ref != ref || a.Digest != sum.Digest || a.MediaType != MediaTypeIndex {
		t.Errorf("read ref %q digest %s type %s; wrote %q %s", a.Ref, a.Digest, a.MediaType, ref, sum.Digest)
	}
	if got, want := a.Platforms(), []Platform{amd64, arm64, armv7}; !reflect.DeepEqual(got, want) {
		t.Errorf("platforms %v, want %v", got, want)
	}
	for i, ps := range sum.Platforms {
		if a.Manifests[i].Digest != ps.Manifest || ps.Compressed <= 0 || ps.Uncompressed <= ps.Compressed {
			t.Errorf("%s: summary %+v, manifest %s", ps.Platform, ps, a.Manifests[i].Digest)
		}
		if got := a.Manifests[i].Config.Config.Entrypoint; !reflect.DeepEqual(got, []string{"/app"}) {
			t.Errorf("%s: entrypoint %v", ps.Platform, got)
		}
		if got := a.Manifests[i].Config.Config.Env; !reflect.DeepEqual(got, []string{DefaultPath}) {
			t.Errorf("%s: env %v", ps.Platform, got)
		}
	}

	for _, tc := range []struct {
		platform Platform
		tool     string
	}{{amd64, "tool for linux/amd64"}, {armv7, "tool for linux/arm/v7"}} {
		dir := t.TempDir()
		if err := a.Extract(tc.platform, dir); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "usr/sbin/tool")) // through the link
		if err != nil || string(got) != tc.tool {
			t.Errorf("%s: /usr/sbin/tool = %q, %v; want %q", tc.platform, got, err, tc.tool)
		}
		for path, mode := range map[string]os.FileMode{"app": 0o755, "etc/conf": 0o644} {
			fi, err := os.Stat(filepath.Join(dir, path))
			if err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: /%s: %v %v, want mode %v", tc.platform, path, fi.Mode(), err, mode)
			}
		}
	}
	if _, err := a.Find(Platform{OS: "linux", Architecture: "s390x"}); err == nil {
		t.Error("Find of a platform the image lacks succeeded")
	}
}

// TestDeterministic: the same files give the same bytes; any change to
// content, mode or config gives another digest.
func TestDeterministic(t *testing.T) {
	const ref = "example.com/app:1"
	first, sum := write(t, ref, sample(t))
	again, sum2 := write(t, ref, sample(t)) // another temp source file, same content
	if !bytes.Equal(first, again) || sum.Digest != sum2.Digest {
		t.Fatalf("two writes differ: %s, %s", sum.Digest, sum2.Digest)
	}
	for name, change := range map[string]func([]Image){
		"content":    func(imgs []Image) { imgs[1].Files[1].Data = []byte("other") },
		"mode":       func(imgs []Image) { imgs[0].Files[3].Mode = 0o600 },
		"entrypoint": func(imgs []Image) { imgs[2].Entrypoint = []string{"/other"} },
		"link":       func(imgs []Image) { imgs[0].Files[2].Link = "/elsewhere" },
	} {
		imgs := sample(t)
		change(imgs)
		if _, s := write(t, ref, imgs); s.Digest == sum.Digest {
			t.Errorf("changing the %s kept the digest", name)
		}
	}
	// The layer carries no time: every entry is dated at the epoch, and
	// gzip's header has no modification time.
	a, err := Read(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	layer := a.blobs[a.Manifests[0].Manifest.Layers[0].Digest]
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() {
		t.Errorf("gzip header time %v", zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: time %v uid %d gid %d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
	}
	want := []string{"app", "etc/", "etc/conf", "usr/", "usr/sbin/", "usr/sbin/tool", "usr/sbin/tool-multi"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("layer entries %v, want %v (sorted, parents first)", names, want)
	}
}

func TestWriteRefuses(t *testing.T) {
	file := func(f File) []Image { return []Image{{Platform: amd64, Files: []File{f}}} }
	for _, tc := range []struct {
		name   string
		ref    string
		images []Image
		want   string
	}{
		{"bad reference", "Not A Ref", sample(t), "valid OCI reference"},
		{"no platforms", "x/y:1", nil, "no platforms"},
		{"platform twice", "x/y:1", []Image{{Platform: amd64}, {Platform: amd64}}, "given twice"},
		{"platform without arch", "x/y:1", []Image{{Platform: Platform{OS: "linux"}}}, "without os or architecture"},
		{"relative path", "x/y:1", file(File{Path: "app", Data: []byte("x")}), "clean absolute path"},
		{"unclean path", "x/y:1", file(File{Path: "/a/../app", Data: []byte("x")}), "clean absolute path"},
		{"data and link", "x/y:1", file(File{Path: "/app", Data: []byte("x"), Link: "b"}), "exactly one"},
		{"nothing", "x/y:1", file(File{Path: "/app"}), "exactly one"},
		{"missing source", "x/y:1", file(File{Path: "/app", Source: "/nonexistent/weft"}), "no such file"},
		{"mode bits", "x/y:1", file(File{Path: "/app", Data: []byte("x"), Mode: os.ModeSetuid | 0o755}), "permission bits"},
		{"file under a file", "x/y:1", []Image{{Platform: amd64, Files: []File{{Path: "/a", Data: []byte("x")}, {Path: "/a/b", Data: []byte("y")}}}}, "is a file"},
		{"file over a directory", "x/y:1", []Image{{Platform: amd64, Files: []File{{Path: "/a/b", Data: []byte("x")}, {Path: "/a", Data: []byte("y")}}}}, "both a directory and a file"},
		{"path twice", "x/y:1", []Image{{Platform: amd64, Files: []File{{Path: "/a", Data: []byte("x")}, {Path: "/a", Data: []byte("y")}}}}, "given twice"},
	} {
		_, err := Write(&bytes.Buffer{}, tc.ref, tc.images)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "img.tar")
	sum, err := WriteFile(p, "x/y:1", sample(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFile(p, "x/y:1", []Image{{Platform: amd64, Files: []File{{Path: "bad"}}}}); err == nil {
		t.Fatal("a bad image was written")
	}
	a, err := ReadFile(p)
	if err != nil || a.Digest != sum.Digest {
		t.Fatalf("after a failed write: %v, digest %v (want the first archive, %s)", err, a, sum.Digest)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

// tarOf builds a tar from name → content; a content starting with "->" is
// a symbolic link.
func tarOf(t *testing.T, files [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f[0], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(f[1]))}
		if target, ok := strings.CutPrefix(f[1], "->"); ok {
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, target, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(f[1]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestReadRefuses(t *testing.T) {
	good, _ := write(t, "x/y:1", sample(t))
	goodArchive, err := Read(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	manifestJSON, _ := json.Marshal(goodArchive.Manifests[0].Manifest)
	badIndex, _ := json.Marshal(Index{SchemaVersion: 2, Manifests: []Descriptor{{MediaType: MediaTypeManifest, Digest: "sha256:" + digest(manifestJSON), Size: int64(len(manifestJSON))}}})
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"docker archive", tarOf(t, [][2]string{{"manifest.json", "[]"}}), ErrNotLayout.Error()},
		{"tampered blob", tarOf(t, [][2]string{{"oci-layout", "{}"}, {"index.json", "{}"}, {"blobs/sha256/" + digest([]byte("a")), "b"}}), "does not match"},
		{"no image", tarOf(t, [][2]string{{"oci-layout", "{}"}, {"index.json", `{"schemaVersion":2,"manifests":[]}`}}), "lists 0 images"},
		{"missing blobs", tarOf(t, [][2]string{{"oci-layout", "{}"}, {"index.json", string(badIndex)}}), "missing"},
		{"truncated inside the last blob", good[:len(good)-1024-512+100], "unexpected EOF"},
		{"not json", tarOf(t, [][2]string{{"oci-layout", "{}"}, {"index.json", "{"}}), "index.json"},
	} {
		_, err := Read(bytes.NewReader(tc.archive))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := Read(bytes.NewReader(tarOf(t, [][2]string{{"manifest.json", "[]"}}))); !errors.Is(err, ErrNotLayout) {
		t.Errorf("a docker archive: %v, want ErrNotLayout", err)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files [][2]string
		want  string
	}{
		{"through a symlinked directory", [][2]string{{"etc", "->/etc"}, {"etc/passwd", "x"}}, "symbolic link"},
		{"whiteout", [][2]string{{"a/.wh.b", ""}}, "whiteouts"},
	} {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(tarOf(t, tc.files))
		zw.Close()
		dir := t.TempDir()
		if err := extractLayer(gz.Bytes(), dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	// "../x" is cleaned to /x: it lands inside the directory.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, [][2]string{{"../../x", "inside"}}))
	zw.Close()
	dir := t.TempDir()
	if err := extractLayer(gz.Bytes(), filepath.Join(dir, "root")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "root", "x")); err != nil || string(b) != "inside" {
		t.Errorf("../../x: %q %v", b, err)
	}
}
