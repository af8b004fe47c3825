package imagebuild

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weftmesh/weft/internal/ociimage"
)

// debArch is how Debian names a platform: its architecture, the multiarch
// triplet its libraries live under, and the ELF machine of its binaries.
type debArch struct {
	name    string
	triplet string
	machine elf.Machine
}

func debianArch(p ociimage.Platform) (debArch, error) {
	switch p.String() {
	case "linux/amd64":
		return debArch{"amd64", "x86_64-linux-gnu", elf.EM_X86_64}, nil
	case "linux/arm64":
		return debArch{"arm64", "aarch64-linux-gnu", elf.EM_AARCH64}, nil
	case "linux/arm/v7":
		return debArch{"armhf", "arm-linux-gnueabihf", elf.EM_ARM}, nil
	}
	return debArch{}, fmt.Errorf("imagebuild: no Debian architecture for %s", p)
}

// debianSet is Debian packages an image takes some files of: the set's
// name (its cache folder and log lines), the packages, and what to take
// out of their unpacked tree for one architecture.
type debianSet struct {
	name     string
	packages []string
	pick     func(root string, arch debArch) ([]ociimage.File, error)
}

// iptablesSet is the init image's: iptables (legacy and nft multi-call
// binaries, extensions), the libraries they load, and libc6 for the loader
// and libc.
var iptablesSet = &debianSet{name: "iptables", packages: []string{
	"iptables", "libxtables12", "libip4tc2", "libip6tc2", "libnftnl11", "libmnl0",
	"libnfnetlink0", "libnetfilter-conntrack3", "libc6",
}}

// prometheusSet is the viz Prometheus image's: Debian's prometheus server
// (without promtool and the web UI's JavaScript packages: the API is what
// viz uses) and libc6.
var prometheusSet = &debianSet{name: "prometheus", packages: []string{"prometheus", "libc6"}}

func init() {
	// Set here, not in the literals: the pick functions name the sets'
	// packages in their errors.
	iptablesSet.pick = iptablesFiles
	prometheusSet.pick = prometheusFiles
}

// debianForPlatforms returns, per platform, the set's files. The
// platforms' packages are fetched (or taken from the cache) and unpacked
// concurrently.
func debianForPlatforms(ctx context.Context, set *debianSet, cacheDir, work string, platforms []ociimage.Platform, log *slog.Logger) (map[ociimage.Platform][]ociimage.File, error) {
	out := map[ociimage.Platform][]ociimage.File{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(platforms))
	for i, p := range platforms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arch, err := debianArch(p)
			if err != nil {
				errs[i] = err
				return
			}
			start := time.Now()
			debs, fetched, err := fetchDebs(ctx, cacheDir, set.name, arch.name, set.packages, log)
			if err != nil {
				errs[i] = err
				return
			}
			root := filepath.Join(work, set.name, arch.name)
			if err := unpackDebs(ctx, debs, root); err != nil {
				errs[i] = err
				return
			}
			files, err := set.pick(root, arch)
			if err != nil {
				errs[i] = err
				return
			}
			log.Info(set.name, "platform", p.String(), "packages", strings.Join(baseNames(debs), " "), "downloaded", fetched, "took", time.Since(start).Round(100*time.Millisecond))
			mu.Lock()
			out[p] = files
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// fetchDebs returns one .deb per package for arch from
// cacheDir/debs/<set>/<arch>, downloading them with apt-get when any is
// missing. apt works on its own state under cacheDir/apt/<set>/<arch> (the
// machine's sources, another architecture, no dpkg --add-architecture, no
// root needed), so the machine's package state is left alone, and sets
// fetched at the same time do not share apt's locks. fetched tells whether
// it downloaded.
func fetchDebs(ctx context.Context, cacheDir, set, arch string, pkgs []string, log *slog.Logger) (debs []string, fetched bool, err error) {
	dir := filepath.Join(cacheDir, "debs", set, arch)
	if debs, err := cachedDebs(dir, arch, pkgs); err == nil {
		return debs, false, nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil, false, fmt.Errorf("imagebuild: Debian's %s for %s is needed: apt-get is not installed (or put %s_*_%s.deb and the others in %s)", set, arch, pkgs[0], arch, dir)
	}
	state := filepath.Join(cacheDir, "apt", set, arch)
	for _, d := range []string{filepath.Join(state, "lists", "partial"), filepath.Join(state, "cache", "archives", "partial"), dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, false, fmt.Errorf("imagebuild: %w", err)
		}
	}
	status := filepath.Join(state, "status")
	if err := os.WriteFile(status, nil, 0o644); err != nil {
		return nil, false, fmt.Errorf("imagebuild: %w", err)
	}
	opts := []string{
		"-q", "-o", "APT::Architecture=" + arch, "-o", "APT::Architectures::=" + arch,
		"-o", "Dir::State::Lists=" + filepath.Join(state, "lists"), "-o", "Dir::State::status=" + status,
		"-o", "Dir::Cache=" + filepath.Join(state, "cache"),
		"-o", "Acquire::Languages=none", "-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
	}
	if os.Geteuid() == 0 {
		// apt would download as _apt, which cannot write into a cache
		// under root's home.
		opts = append(opts, "-o", "APT::Sandbox::User=root")
	}
	log.Info("fetching Debian packages", "arch", arch, "packages", strings.Join(pkgs, " "))
	// A mirror caught mid-sync fails one index now and then ("File has
	// unexpected size"): try again, then go on with the indexes that came
	// (apt keeps them); the download below fails if a package is missing.
	for attempt := 1; ; attempt++ {
		err := runIn(ctx, "", "apt-get", append(opts, "update")...)
		if err == nil {
			break
		}
		if attempt == 3 {
			log.Warn("apt-get update failed; using the indexes it fetched", "arch", arch, "errors", aptErrors(err.Error()))
			break
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(time.Duration(attempt) * 2 * time.Second):
		}
	}
	tmp, err := os.MkdirTemp(filepath.Join(cacheDir, "debs", set), ".download-"+arch+"-")
	if err != nil {
		return nil, false, fmt.Errorf("imagebuild: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := runIn(ctx, tmp, "apt-get", append(opts, append([]string{"download"}, pkgs...)...)...); err != nil {
		return nil, false, err
	}
	// Replace the cached set as a whole: stale versions go.
	old, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	for _, f := range old {
		os.Remove(f)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	for _, f := range got {
		if err := os.Rename(f, filepath.Join(dir, filepath.Base(f))); err != nil {
			return nil, false, fmt.Errorf("imagebuild: %w", err)
		}
	}
	debs, err = cachedDebs(dir, arch, pkgs)
	return debs, true, err
}

// cachedDebs finds exactly one .deb per package in dir.
func cachedDebs(dir, arch string, pkgs []string) ([]string, error) {
	var out []string
	for _, p := range pkgs {
		var found []string
		for _, a := range []string{arch, "all"} {
			m, _ := filepath.Glob(filepath.Join(dir, p+"_*_"+a+".deb"))
			found = append(found, m...)
		}
		if len(found) != 1 {
			return nil, fmt.Errorf("imagebuild: %d cached %s packages for %s in %s, want 1", len(found), p, arch, dir)
		}
		out = append(out, found[0])
	}
	return out, nil
}

// unpackDebs extracts each package's files into root with dpkg-deb -x.
func unpackDebs(ctx context.Context, debs []string, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	for _, d := range debs {
		if err := runIn(ctx, "", "dpkg-deb", "-x", d, root); err != nil {
			return err
		}
	}
	return nil
}

func runIn(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("imagebuild: %s %s: %w\n%s", name, lastArgs(args), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// aptErrors keeps apt's error lines (E: …) of its output.
func aptErrors(out string) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return strings.TrimSpace(out)
	}
	return strings.Join(errs, " | ")
}

func lastArgs(args []string) string {
	if len(args) > 4 {
		return "… " + strings.Join(args[len(args)-4:], " ")
	}
	return strings.Join(args, " ")
}

// iptablesFiles picks the init image's files out of an unpacked Debian
// tree: both multi-call binaries under the names weft-proxy-init and people
// call them by, every extension, the libraries all of them load (followed
// through DT_NEEDED) and the dynamic loader. Plain iptables/ip6tables are
// the legacy ones, as weft-proxy-init's --firewall-bin-path=iptables is.
func iptablesFiles(root string, arch debArch) ([]ociimage.File, error) {
	var files []ociimage.File
	var elves []string // files whose libraries are needed
	for _, mode := range []string{"legacy", "nft"} {
		multi := "xtables-" + mode + "-multi"
		files = append(files, ociimage.File{Path: "/usr/sbin/" + multi, Source: filepath.Join(root, "usr/sbin", multi)})
		elves = append(elves, "/usr/sbin/"+multi)
		for _, fam := range []string{"iptables", "ip6tables"} {
			for _, suffix := range []string{"", "-save", "-restore"} {
				files = append(files, ociimage.File{Path: "/usr/sbin/" + fam + "-" + mode + suffix, Link: multi})
				if mode == "legacy" {
					files = append(files, ociimage.File{Path: "/usr/sbin/" + fam + suffix, Link: multi})
				}
			}
		}
	}
	extDir := "/usr/lib/" + arch.triplet + "/xtables"
	exts, err := filepath.Glob(filepath.Join(root, extDir, "*.so"))
	if err != nil || len(exts) == 0 {
		return nil, fmt.Errorf("imagebuild: no iptables extensions in %s (%v)", filepath.Join(root, extDir), err)
	}
	for _, e := range exts {
		p := extDir + "/" + filepath.Base(e)
		real, err := resolveIn(root, p)
		if err != nil {
			return nil, err
		}
		files = append(files, ociimage.File{Path: p, Source: real})
		elves = append(elves, p)
	}
	return withLibraries(root, arch, files, elves, iptablesSet)
}

// prometheusFiles picks the Prometheus image's files: the server at
// /usr/bin/prometheus, the libraries it loads and the dynamic loader.
func prometheusFiles(root string, arch debArch) ([]ociimage.File, error) {
	bin, err := resolveIn(root, "/usr/bin/prometheus")
	if err != nil {
		return nil, err
	}
	files := []ociimage.File{{Path: "/usr/bin/prometheus", Source: bin}}
	return withLibraries(root, arch, files, []string{"/usr/bin/prometheus"}, prometheusSet)
}

// withLibraries adds to files the libraries the ELF files elves (image
// paths) load, followed through DT_NEEDED, and the dynamic loader they
// all name (PT_INTERP), and sorts them by path.
func withLibraries(root string, arch debArch, files []ociimage.File, elves []string, set *debianSet) ([]ociimage.File, error) {
	// The dynamic loader, at the path the binaries name (PT_INTERP).
	interp := ""
	for _, e := range elves {
		real, err := resolveIn(root, e)
		if err != nil {
			return nil, err
		}
		_, in, err := elfDeps(real, arch.machine)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %s: %w", e, err)
		}
		if in == "" {
			continue // a shared library
		}
		if interp != "" && in != interp {
			return nil, fmt.Errorf("imagebuild: %s names loader %q, another file %q", e, in, interp)
		}
		interp = in
	}
	if interp == "" {
		return nil, fmt.Errorf("imagebuild: none of %v names a dynamic loader", elves)
	}
	// Libraries, breadth first over DT_NEEDED, found where the loader looks
	// and all put in /usr/lib/<triplet> (a system directory of Debian's
	// loader; qemu-arm's loader does not find libraries in /lib/<triplet>
	// of a -L tree, which the tests use). The loader itself, which armhf
	// binaries also list as needed, is already loaded.
	searchDirs := []string{"/lib/" + arch.triplet, "/usr/lib/" + arch.triplet, "/lib", "/usr/lib"}
	libDir := "/usr/lib/" + arch.triplet
	haveLib := map[string]bool{path.Base(interp): true}
	for len(elves) > 0 {
		p := elves[0]
		elves = elves[1:]
		real, err := resolveIn(root, p)
		if err != nil {
			return nil, err
		}
		needed, _, err := elfDeps(real, arch.machine)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %s: %w", p, err)
		}
		for _, lib := range needed {
			if haveLib[lib] {
				continue
			}
			found := ""
			for _, d := range searchDirs {
				if fileExists(filepath.Join(root, d, lib)) {
					found = d + "/" + lib
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("imagebuild: %s needs %s, which none of the Debian packages %v holds", p, lib, set.packages)
			}
			haveLib[lib] = true
			libReal, err := resolveIn(root, found)
			if err != nil {
				return nil, err
			}
			files = append(files, ociimage.File{Path: libDir + "/" + lib, Source: libReal})
			elves = append(elves, found)
		}
	}
	interpReal, err := resolveIn(root, interp)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: the loader %s: %w", interp, err)
	}
	files = append(files, ociimage.File{Path: interp, Source: interpReal})
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// elfDeps returns an ELF file's DT_NEEDED libraries and its PT_INTERP,
// checking it is built for machine m.
func elfDeps(file string, m elf.Machine) (needed []string, interp string, err error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	if f.Machine != m {
		return nil, "", fmt.Errorf("built for %v, want %v", f.Machine, m)
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return nil, "", err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, "", err
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	return needed, interp, nil
}

// resolveIn follows symbolic links of the image path p inside root (an
// absolute link target is relative to root, as it would be in the image)
// and returns the host path of the file it ends at.
func resolveIn(root, p string) (string, error) {
	cur := path.Clean("/" + p)
	for hops := 0; hops < 40; hops++ {
		// Resolve the parents first, then the last element.
		dir, base := path.Split(cur)
		if dir != "/" {
			d, err := resolveIn(root, dir)
			if err != nil {
				return "", err
			}
			rel, err := filepath.Rel(root, d)
			if err != nil || strings.HasPrefix(rel, "..") {
				return "", fmt.Errorf("imagebuild: %s leaves the unpacked tree", p)
			}
			dir = "/" + filepath.ToSlash(rel) + "/"
			if rel == "." {
				dir = "/"
			}
		}
		cur = path.Join(dir, base)
		host := filepath.Join(root, filepath.FromSlash(cur))
		fi, err := os.Lstat(host)
		if err != nil {
			return "", fmt.Errorf("imagebuild: %s: %w", p, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", fmt.Errorf("imagebuild: %w", err)
		}
		if !path.IsAbs(target) {
			target = path.Join(dir, target)
		}
		cur = path.Clean(target)
	}
	return "", fmt.Errorf("imagebuild: %s: too many symbolic links", p)
}
