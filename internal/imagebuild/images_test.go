package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/ociimage"
	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/serving"
)

// The images are built once per test binary by make images' command, in
// its own process (the race detector of make test would slow its gzip
// tenfold), into a temporary directory, and shared by the tests below.
var fixture struct {
	once  sync.Once
	dir   string
	paths map[string]string // image name → archive
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// buildCommand runs go run ./tools/build-images -out dir args... and
// returns the archives it wrote.
func buildCommand(t *testing.T, dir string, args ...string) (map[string]string, error) {
	t.Helper()
	cmd := exec.Command(goCommand(), append([]string{"run", "./tools/build-images", "-out", dir}, args...)...)
	cmd.Dir = repoRoot(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("go run ./tools/build-images -out %s %s: %v in %v\n%s\n%s", dir, strings.Join(args, " "), err,
		time.Since(start).Round(time.Second), stderr.String(), stdout.String())
	if err != nil {
		return nil, fmt.Errorf("build-images: %w", err)
	}
	paths := map[string]string{}
	for _, name := range Names() {
		if p := filepath.Join(dir, name+".tar"); fileExists(p) {
			paths[name] = p
		}
	}
	return paths, nil
}

// built returns every image's archive, every platform, built once.
func built(t *testing.T) map[string]string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds every image for three platforms")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is needed to unpack Debian's iptables (a Debian machine)")
	}
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "weft-images-test-")
		if fixture.err == nil {
			fixture.paths, fixture.err = buildCommand(t, fixture.dir)
		}
	})
	if fixture.err != nil {
		t.Fatalf("building the images: %v", fixture.err)
	}
	return fixture.paths
}

// startUntilCleanup starts cmd and stops it when the test ends (SIGTERM,
// then SIGKILL after 10 s); the channel delivers its exit.
func startUntilCleanup(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return exited
}

func indexDigest(path string) string {
	a, err := ociimage.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return a.Digest
}

func parse(t *testing.T, s string) ociimage.Platform {
	t.Helper()
	p, err := ociimage.ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEveryArchiveListsThreePlatforms: one archive per image the charts
// use, each an index of linux/amd64, linux/arm64 and linux/arm/v7 under the
// chart's default name, each manifest's binary built for its platform.
func TestEveryArchiveListsThreePlatforms(t *testing.T) {
	paths := built(t)
	chart, err := ReadChart(filepath.Join(repoRoot(t), "charts", "weft-control-plane"))
	if err != nil {
		t.Fatal(err)
	}
	if chart.Refs[Prometheus], err = readVizPrometheus(filepath.Join(repoRoot(t), "charts", "weft-viz")); err != nil {
		t.Fatal(err)
	}
	if want := "ghcr.io/weftmesh/weft-prometheus:" + chart.Version; chart.Refs[Prometheus] != want {
		t.Errorf("the viz chart's Prometheus image is %q, want %q", chart.Refs[Prometheus], want)
	}
	want := []ociimage.Platform{parse(t, "linux/amd64"), parse(t, "linux/arm64"), parse(t, "linux/arm/v7")}
	for _, tc := range []struct {
		name       string
		entrypoint string
	}{{Controller, "/weft-controller"}, {Proxy, "/weft-proxy"}, {ProxyInit, "/weft-proxy-init"}, {Prometheus, "/usr/bin/prometheus"}} {
		path, ok := paths[tc.name]
		if !ok {
			t.Errorf("no %s.tar", tc.name)
			continue
		}
		a, err := ociimage.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if a.Ref != chart.Refs[tc.name] || a.MediaType != ociimage.MediaTypeIndex {
			t.Errorf("%s: named %q (%s), want %q, an image index", tc.name, a.Ref, a.MediaType, chart.Refs[tc.name])
		}
		if got := a.Platforms(); !slices.Equal(got, want) {
			t.Errorf("%s: platforms %v, want %v", tc.name, got, want)
		}
		for _, m := range a.Manifests {
			if !slices.Equal(m.Config.Config.Entrypoint, []string{tc.entrypoint}) {
				t.Errorf("%s %s: entrypoint %v", tc.name, m.Platform, m.Config.Config.Entrypoint)
			}
		}
	}
}

// TestReproducible: building the proxy image again, into another
// directory, gives the same archive, byte for byte.
func TestReproducible(t *testing.T) {
	first := built(t)[Proxy]
	again, err := buildCommand(t, t.TempDir(), "-images", Proxy)
	if err != nil {
		t.Fatal(err)
	}
	a, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(again[Proxy])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds of the proxy image differ: index %s, then %s", indexDigest(first), indexDigest(again[Proxy]))
	}
	arc, err := ociimage.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("two builds, one archive: index %s", arc.Digest)
}

// qemu returns the qemu-user emulator for p ("" for the machine's own
// platform), skipping the test when it is not installed unless
// WEFT_REQUIRE_QEMU is set.
func qemu(t *testing.T, p ociimage.Platform) string {
	t.Helper()
	name := map[string]string{"linux/amd64": "qemu-x86_64", "linux/arm64": "qemu-aarch64", "linux/arm/v7": "qemu-arm"}[p.String()]
	for _, n := range []string{name + "-static", name} {
		if path, err := exec.LookPath(n); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("%s-static is not installed (Debian: apt-get install qemu-user-static)", name)
	if os.Getenv("WEFT_REQUIRE_QEMU") != "" {
		t.Fatalf("%s, and WEFT_REQUIRE_QEMU is set", msg)
	}
	t.Skipf("%s; set WEFT_REQUIRE_QEMU=1 to make this a failure", msg)
	return ""
}

// extract unpacks one platform of an archive into a temporary directory.
func extract(t *testing.T, archive string, p ociimage.Platform) string {
	t.Helper()
	a, err := ociimage.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := a.Extract(p, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestProxyUnderQemu runs the arm64 and armv7 proxies of the proxy image
// under qemu-user (and amd64's natively): each starts, answers /ready, and
// forwards an HTTP request in explicit mode (--dst/--bind) on loopback.
func TestProxyUnderQemu(t *testing.T) {
	archive := built(t)[Proxy]
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app, %s", r.URL.Path)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Serve(l)
	t.Cleanup(func() { app.Close() })

	for _, platform := range []string{"linux/arm64", "linux/arm/v7", "linux/amd64"} {
		t.Run(strings.ReplaceAll(platform, "/", "-"), func(t *testing.T) {
			p := parse(t, platform)
			var emulator string
			if p != ociimage.HostPlatform() {
				emulator = qemu(t, p)
			}
			root := extract(t, archive, p)
			out := run(t, emulator, root, "/weft-proxy", "--version")
			if strings.TrimSpace(out) == "" {
				t.Errorf("weft-proxy --version printed nothing")
			}
			bind := startProxy(t, emulator, root, l.Addr().String())
			resp, err := http.Get("http://" + bind + "/through/the/proxy")
			if err != nil {
				t.Fatalf("request through the %s proxy: %v", platform, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello from the app, /through/the/proxy" {
				t.Fatalf("through the %s proxy: %d %q", platform, resp.StatusCode, body)
			}
			if out := run(t, emulator, root, "/weft-await", "--help"); !strings.Contains(out, "weft-await") {
				t.Errorf("weft-await --help: %q", out)
			}
		})
	}
}

// run runs an image's binary (under emulator when set, with the image's
// root as its library prefix) and returns its combined output.
func run(t *testing.T, emulator, root, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := command(ctx, emulator, root, bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func command(ctx context.Context, emulator, root, bin string, args ...string) *exec.Cmd {
	if emulator == "" {
		return exec.CommandContext(ctx, filepath.Join(root, bin), args...)
	}
	return exec.CommandContext(ctx, emulator, append([]string{"-L", root, filepath.Join(root, bin)}, args...)...)
}

// startProxy starts the image's weft-proxy with one destination (the app)
// bound to an extra outbound listener, every listener on port 0, waits for
// its address file and /ready and returns that listener's address.
func startProxy(t *testing.T, emulator, root, appAddr string) string {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addrs.json")
	var logs bytes.Buffer
	cmd := command(context.Background(), emulator, root, "/weft-proxy",
		"--admin-addr", "127.0.0.1:0", "--control-addr", "127.0.0.1:0", "--outbound-addr", "127.0.0.1:0", "--inbound-addr", "127.0.0.1:0",
		"--dst", "app.test:80="+appAddr, "--bind", "127.0.0.1:0=app.test:80", "--log-level", "info", "--addr-file", addrFile)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, gone := make(chan error, 1), make(chan struct{})
	go func() { exited <- cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-gone:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-gone
		}
	})
	addrs, err := serving.ReadAddrFile(addrFile, 60*time.Second, gone)
	if err == nil {
		err = waitReady("http://"+addrs["admin"]+"/ready", exited, 60*time.Second)
	}
	if err != nil {
		cmd.Process.Kill()
		<-gone // its output is all copied: logs can be read
		t.Fatalf("the proxy did not get ready: %v\n%s", err, logs.String())
	}
	return addrs["bind app.test:80"]
}

func waitReady(url string, exited <-chan error, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the proxy exited: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v (last: %v)", url, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestInitImageIptablesUnderQemu runs the init image's own iptables (its
// loader and libraries, not the machine's) for arm64 and armv7 under
// qemu-user, and for amd64 in a chroot of the image: the legacy binaries
// print their version and load the extensions weft-proxy-init's rules use;
// the nft binaries resolve every library (running them needs nf_tables
// netlink, which qemu-user does not translate).
func TestInitImageIptablesUnderQemu(t *testing.T) {
	archive := built(t)[ProxyInit]
	for _, tc := range []struct {
		platform, triplet string
	}{
		{"linux/arm64", "aarch64-linux-gnu"},
		{"linux/arm/v7", "arm-linux-gnueabihf"},
		{"linux/amd64", "x86_64-linux-gnu"},
	} {
		t.Run(strings.ReplaceAll(tc.platform, "/", "-"), func(t *testing.T) {
			p := parse(t, tc.platform)
			in := imageRunner{root: extract(t, archive, p)}
			if p == ociimage.HostPlatform() {
				// qemu -L would fall back to the machine's own files for
				// any the image lacks: run in a chroot of the image.
				if os.Geteuid() != 0 {
					t.Skip("needs root to chroot into the image of this machine's platform")
				}
				in.chroot = true
			} else {
				in.emulator = qemu(t, p)
			}
			xtables := "/usr/lib/" + tc.triplet + "/xtables"
			if p.Architecture == "arm" {
				// qemu-arm does not apply -L to statx, which iptables uses
				// to find an extension: point it at the unpacked directory,
				// and check below that libxtables looks there by default.
				in.env = []string{"XTABLES_LIBDIR=" + filepath.Join(in.root, xtables)}
			}
			for _, name := range []string{"iptables", "iptables-legacy", "ip6tables-legacy-save", "iptables-legacy-restore"} {
				if out := in.run(t, "/usr/sbin/"+name, "--version"); !strings.Contains(out, "v1.8") || !strings.Contains(out, "legacy") {
					t.Errorf("%s --version: %q", name, out)
				}
			}
			help := in.run(t, "/usr/sbin/iptables-legacy", "-p", "tcp", "-m", "tcp", "-m", "comment", "-m", "owner", "-m", "multiport", "-j", "REDIRECT", "--help")
			for _, want := range []string{"tcp match options", "comment match options", "owner match options", "multiport match options", "REDIRECT target options"} {
				if !strings.Contains(help, want) {
					t.Errorf("iptables-legacy --help with the rules' extensions lacks %q", want)
				}
			}
			lib, err := os.ReadFile(filepath.Join(in.root, "usr/lib", tc.triplet, "libxtables.so.12"))
			if err != nil || !bytes.Contains(lib, []byte(xtables+"\x00")) {
				t.Errorf("libxtables does not look for extensions in %s (%v)", xtables, err)
			}
			for _, name := range []string{"iptables-nft", "ip6tables-nft-restore"} {
				out := in.output(t, []string{"LD_TRACE_LOADED_OBJECTS=1"}, "/usr/sbin/"+name)
				if strings.Contains(out, "not found") || !strings.Contains(out, "libnftnl.so.11 => /usr/lib/"+tc.triplet+"/libnftnl.so.11") {
					t.Errorf("%s's libraries:\n%s", name, out)
				}
			}
			if out := in.run(t, "/weft-proxy-init", "--version"); strings.TrimSpace(out) == "" {
				t.Error("weft-proxy-init --version printed nothing")
			}
		})
	}
}

// imageRunner runs a program of an unpacked image: under a qemu-user
// emulator with the image as its library prefix, or in a chroot.
type imageRunner struct {
	root     string
	emulator string
	chroot   bool
	env      []string
}

func (r imageRunner) run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := r.cmd(nil, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// output runs bin with extra environment and returns its output whatever
// its exit status.
func (r imageRunner) output(t *testing.T, env []string, bin string) string {
	t.Helper()
	out, _ := r.cmd(env, bin).CombinedOutput()
	return string(out)
}

func (r imageRunner) cmd(env []string, bin string, args ...string) *exec.Cmd {
	env = append(append([]string{"PATH=/usr/sbin:/usr/bin"}, r.env...), env...)
	var cmd *exec.Cmd
	if r.chroot {
		cmd = exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: r.root}
		cmd.Dir = "/"
		cmd.Env = env
	} else {
		qargs := []string{"-L", r.root}
		for _, e := range env {
			qargs = append(qargs, "-E", e)
		}
		cmd = exec.Command(r.emulator, append(append(qargs, filepath.Join(r.root, bin)), args...)...)
	}
	cmd.WaitDelay = time.Minute
	return cmd
}

// TestPrometheusImage runs the viz Prometheus image's own binary (its
// loader and libraries): for arm64 and armv7 under qemu-user it prints its
// version; for amd64 in a chroot of the image it serves, scrapes itself
// and answers a query, as the weft-viz chart runs it.
func TestPrometheusImage(t *testing.T) {
	archive := built(t)[Prometheus]
	for _, platform := range []string{"linux/arm64", "linux/arm/v7", "linux/amd64"} {
		t.Run(strings.ReplaceAll(platform, "/", "-"), func(t *testing.T) {
			p := parse(t, platform)
			in := imageRunner{root: extract(t, archive, p)}
			if p != ociimage.HostPlatform() {
				in.emulator = qemu(t, p)
				if out := in.run(t, "/usr/bin/prometheus", "--version"); !strings.Contains(out, "prometheus, version 2.") {
					t.Errorf("prometheus --version: %q", out)
				}
				return
			}
			if os.Geteuid() != 0 {
				t.Skip("needs root to chroot into the image of this machine's platform")
			}
			in.chroot = true
			addr := proctest.FreeAddr(t) // Prometheus cannot bind port 0 and say where
			for _, d := range []string{"etc/prometheus", "data"} {
				if err := os.MkdirAll(filepath.Join(in.root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cfg := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n- job_name: self\n  static_configs: [{targets: [%q]}]\n", addr)
			if err := os.WriteFile(filepath.Join(in.root, "etc/prometheus/prometheus.yml"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			// The chart's arguments.
			cmd := in.cmd(nil, "/usr/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/data",
				"--storage.tsdb.retention.time=6h", "--web.listen-address="+addr)
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			exited := startUntilCleanup(t, cmd)
			if err := waitReady("http://"+addr+"/-/ready", exited, time.Minute); err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
				resp, err := http.Get("http://" + addr + "/api/v1/query?query=up")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if strings.Contains(string(body), `"job":"self"`) && strings.Contains(string(body), `"1"]`) {
					t.Logf("up: %s", body)
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("query up: %s\n%s", body, logs.String())
				}
			}
		})
	}
}
