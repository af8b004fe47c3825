package imagebuild

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestResolveIn: links in an unpacked tree are followed inside the tree,
// absolute targets meaning the tree's root, as in the image.
func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	mk := func(p, content string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(root, p), []byte(content), 0o644)
	}
	link := func(p, target string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1", "loader")
	link("lib/ld-linux-aarch64.so.1", "aarch64-linux-gnu/ld-linux-aarch64.so.1") // relative, as libc6 ships it
	mk("usr/lib/x/libfoo.so.1.2.3", "foo")
	link("usr/lib/x/libfoo.so.1", "libfoo.so.1.2.3")
	link("usr/lib/x/abs.so", "/usr/lib/x/libfoo.so.1") // absolute: inside the tree
	link("usr/dir", "lib/x")                           // a linked directory
	link("loop", "loop")
	link("escape", "../../../../etc/passwd") // cleaned at the tree's root: /etc/passwd of the tree
	for _, tc := range []struct {
		path, want, wantErr string
	}{
		{path: "/lib/ld-linux-aarch64.so.1", want: "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"},
		{path: "/usr/lib/x/libfoo.so.1", want: "usr/lib/x/libfoo.so.1.2.3"},
		{path: "/usr/lib/x/abs.so", want: "usr/lib/x/libfoo.so.1.2.3"},
		{path: "/usr/dir/libfoo.so.1", want: "usr/lib/x/libfoo.so.1.2.3"},
		{path: "/loop", wantErr: "too many symbolic links"},
		{path: "/escape", wantErr: "no such file"},
		{path: "/missing", wantErr: "no such file"},
	} {
		got, err := resolveIn(root, tc.path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %q, %v; want an error saying %q", tc.path, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.path, got, err, filepath.Join(root, tc.want))
		}
	}
}

func TestCachedDebs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"iptables_1.8.9-2_arm64.deb", "libc6_2.36-9_arm64.deb", "tzdata_2024a_all.deb",
		"libmnl0_1_arm64.deb", "libmnl0_2_arm64.deb", "libxtables12_1_amd64.deb"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	for _, tc := range []struct {
		pkgs    []string
		want    []string
		wantErr string
	}{
		{pkgs: []string{"iptables", "libc6", "tzdata"}, want: []string{"iptables_1.8.9-2_arm64.deb", "libc6_2.36-9_arm64.deb", "tzdata_2024a_all.deb"}},
		{pkgs: []string{"libmnl0"}, wantErr: "2 cached libmnl0"},
		{pkgs: []string{"libxtables12"}, wantErr: "0 cached libxtables12"}, // another architecture's
	} {
		got, err := cachedDebs(dir, "arm64", tc.pkgs)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: %v, want an error saying %q", tc.pkgs, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(baseNames(got), tc.want) {
			t.Errorf("%v: %v, %v; want %v", tc.pkgs, baseNames(got), err, tc.want)
		}
	}
}

func TestAptErrors(t *testing.T) {
	out := "Get:1 http://deb.debian.org/debian bookworm InRelease\nErr:6 http://x Packages\n  File has unexpected size\nE: Failed to fetch http://x/Packages.xz  File has unexpected size\nE: Some index files failed to download.\n"
	if got, want := aptErrors(out), "E: Failed to fetch http://x/Packages.xz  File has unexpected size | E: Some index files failed to download."; got != want {
		t.Errorf("aptErrors: %q, want %q", got, want)
	}
	if got := aptErrors("no error lines\n"); got != "no error lines" {
		t.Errorf("aptErrors without E: lines: %q", got)
	}
}
