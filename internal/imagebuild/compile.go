package imagebuild

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/weftmesh/weft/internal/ociimage"
)

// VersionVar is the variable the build's version is linked into.
const VersionVar = "github.com/weftmesh/weft/internal/version.Version"

// target is how Go and ELF name a platform.
type target struct {
	env     []string
	machine elf.Machine
}

// goEnv is the cross-compilation environment of a platform. Every knob
// that would otherwise come from the caller's environment (GOAMD64,
// GOARM64, GOFLAGS) is pinned, so two machines build the same bytes.
func goEnv(p ociimage.Platform) (target, error) {
	if p.OS != "linux" {
		return target{}, fmt.Errorf("imagebuild: platform %s: only linux images are built", p)
	}
	base := []string{"CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=", "GOEXPERIMENT="}
	switch {
	case p.Architecture == "amd64" && p.Variant == "":
		return target{append(base, "GOARCH=amd64", "GOAMD64=v1"), elf.EM_X86_64}, nil
	case p.Architecture == "arm64" && (p.Variant == "" || p.Variant == "v8"):
		return target{append(base, "GOARCH=arm64", "GOARM64=v8.0"), elf.EM_AARCH64}, nil
	case p.Architecture == "arm" && (p.Variant == "v6" || p.Variant == "v7"):
		return target{append(base, "GOARCH=arm", "GOARM="+strings.TrimPrefix(p.Variant, "v")), elf.EM_ARM}, nil
	}
	return target{}, fmt.Errorf("imagebuild: platform %s is not one this builder knows (linux/amd64, linux/arm64, linux/arm/v7)", p)
}

// BuildTags are the build tags of release binaries (the Makefile's TAGS):
// grpcnotrace leaves grpc-go's request tracing (golang.org/x/net/trace) out,
// which trims weft-proxy's binary and idle RSS (issue 17).
const BuildTags = "grpcnotrace"

// compile builds ./cmd/<command> for platform p into dir: static
// (CGO_ENABLED=0), stripped, without paths (-trimpath) or a build ID, with
// version linked in. It checks each binary is an ELF file for p.
func compile(ctx context.Context, root, dir string, p ociimage.Platform, version string, commands []string) error {
	t, err := goEnv(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("imagebuild: %w", err)
	}
	args := []string{"build", "-trimpath", "-tags", BuildTags, "-ldflags", "-s -w -buildid= -X " + VersionVar + "=" + version, "-o", dir + string(filepath.Separator)}
	for _, c := range commands {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, goCommand(), args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), t.env...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("imagebuild: go build for %s: %w\n%s", p, err, strings.TrimSpace(stderr.String()))
	}
	for _, c := range commands {
		if err := checkELF(filepath.Join(dir, c), t.machine); err != nil {
			return err
		}
	}
	return nil
}

// goCommand is the go binary of the toolchain running this build when
// known (go run, go test), else the one on PATH.
func goCommand() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkELF fails unless path is an ELF file for machine m.
func checkELF(path string, m elf.Machine) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("imagebuild: %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != m {
		return fmt.Errorf("imagebuild: %s is built for %v, want %v", path, f.Machine, m)
	}
	return nil
}
