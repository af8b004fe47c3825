//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/kubetest"
)

// Images the mesh runs from, built from this tree and loaded into the
// cluster's containerd.
const (
	controllerImage = "weft.local/weft-controller"
	proxyImage      = "weft.local/weft-proxy"
	proxyInitImage  = "weft.local/weft-proxy-init"
	clientImage     = "weft.local/testapp-await:dev" // testapp with weft-await beside it
	imageVersion    = "e2e"
)

// buildImages compiles the binaries and loads the images.
func buildImages(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "./cmd/weft-controller", "./cmd/weft-proxy",
		"./cmd/weft-await", "./cmd/weft-proxy-init", "./test/testapp")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin := func(name string) string { return filepath.Join(dir, name) }
	images := []kubetest.Image{
		{Tag: controllerImage + ":" + imageVersion, Files: map[string]string{"/weft-controller": bin("weft-controller")}, Entrypoint: []string{"/weft-controller"}},
		{Tag: proxyImage + ":" + imageVersion, Files: map[string]string{"/weft-proxy": bin("weft-proxy"), "/weft-await": bin("weft-await")}, Entrypoint: []string{"/weft-proxy"}},
		{Tag: proxyInitImage + ":" + imageVersion, Files: initFiles(t, bin("weft-proxy-init")), Entrypoint: []string{"/weft-proxy-init"}},
		{Tag: clientImage, Files: map[string]string{"/testapp": bin("testapp"), "/weft-await": bin("weft-await")}, Entrypoint: []string{"/testapp"}},
	}
	var tars []string
	for i, img := range images {
		tar := filepath.Join(dir, "image-"+string(rune('a'+i))+".tar")
		if err := img.WriteArchive(tar); err != nil {
			t.Fatal(err)
		}
		tars = append(tars, tar)
	}
	load := exec.Command("go", append([]string{"run", "./test/cluster/clusterctl", "load"}, tars...)...)
	load.Dir = "../.."
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("loading images: %v\n%s", err, out)
	}
}

// initFiles is the init image: weft-proxy-init and Debian's iptables, legacy
// and nft (each multi-call binary under the names it is called by, their
// libraries and the extensions).
func initFiles(t *testing.T, initBin string) map[string]string {
	t.Helper()
	files := map[string]string{"/weft-proxy-init": initBin}
	for _, mode := range []string{"legacy", "nft"} {
		multi, err := filepath.EvalSymlinks("/usr/sbin/xtables-" + mode + "-multi")
		if err != nil {
			t.Fatalf("iptables (%s) is needed for the init image: apt-get install iptables (%v)", mode, err)
		}
		for _, fam := range []string{"iptables", "ip6tables"} {
			for _, suffix := range []string{"", "-save", "-restore"} {
				files["/usr/sbin/"+fam+"-"+mode+suffix] = multi
			}
		}
		out, err := exec.Command("ldd", multi).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", multi, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				files["/lib/x86_64-linux-gnu/"+f[0]] = f[2]
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"): // the loader
				files[f[0]] = f[0]
			}
		}
	}
	exts, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	for _, e := range exts {
		files[e] = e
	}
	return files
}
