package discipline

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "github.com/weftmesh/weft/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}

func TestNoGrabBagPackageNames(t *testing.T) {
	for _, p := range listPackages(t) {
		switch path.Base(p.ImportPath) {
		case "util", "utils", "common", "helpers", "misc", "shared":
			t.Errorf("package %s: name it for what it does", p.ImportPath)
		}
	}
}

// The data plane must stay small and must not talk to the Kubernetes API:
// everything it learns comes from the control plane over api/.
func TestProxyDoesNotImportKubernetesClients(t *testing.T) {
	forbidden := []string{"k8s.io/client-go", "k8s.io/api/", "k8s.io/apimachinery", "sigs.k8s.io/"}
	checked := 0
	for _, p := range listPackages(t) {
		if p.ImportPath != "github.com/weftmesh/weft/cmd/weft-proxy" {
			continue
		}
		checked++
		for _, d := range p.Deps {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("weft-proxy depends on %s", d)
				}
			}
		}
	}
	if checked != 1 {
		t.Fatalf("cmd/weft-proxy not found by go list")
	}
}

// The CLI renders, applies and checks; it must not carry the control
// plane's servers (or the proxy) in its binary. Shared helpers live where
// both can use them (kubeclient, inject, identity/pki).
func TestCLIDoesNotImportTheControlPlane(t *testing.T) {
	const mod = "github.com/weftmesh/weft/"
	forbidden := []string{mod + "internal/controller", mod + "internal/destination", mod + "internal/identity",
		mod + "internal/injector", mod + "internal/proxy", mod + "internal/discovery", mod + "api/"}
	allowed := []string{mod + "internal/identity/pki"}
	checked := 0
	for _, p := range listPackages(t) {
		if p.ImportPath != mod+"cmd/weft" {
			continue
		}
		checked++
		for _, d := range p.Deps {
			if slices.Contains(allowed, d) {
				continue
			}
			for _, f := range forbidden {
				if d == f || strings.HasPrefix(d, strings.TrimSuffix(f, "/")+"/") {
					t.Errorf("the weft CLI depends on %s (a control-plane package)", d)
				}
			}
		}
	}
	if checked != 1 {
		t.Fatalf("cmd/weft not found by go list")
	}
}
