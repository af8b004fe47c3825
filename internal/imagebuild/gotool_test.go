package imagebuild

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weftmesh/weft/internal/ociimage"
)

func TestToolPlatforms(t *testing.T) {
	amd64, arm64, armv7 := parse(t, "linux/amd64"), parse(t, "linux/arm64"), parse(t, "linux/arm/v7")
	for _, tc := range []struct {
		name string
		s    spec
		want []ociimage.Platform
		got  []ociimage.Platform
	}{
		{"weft's own image: every platform", spec{name: Proxy}, []ociimage.Platform{amd64, arm64, armv7}, []ociimage.Platform{amd64, arm64, armv7}},
		{"jaeger: amd64 only", spec{name: Jaeger, tool: jaegerTool}, []ociimage.Platform{arm64, amd64, armv7}, []ociimage.Platform{amd64}},
		{"jaeger on arm only: none", spec{name: Jaeger, tool: jaegerTool}, []ociimage.Platform{arm64}, nil},
	} {
		if got := tc.s.platforms(tc.want); !slices.Equal(got, tc.got) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.got)
		}
	}
}

// The tool's cache key follows its module's go.sum and the platform.
func TestToolCacheKey(t *testing.T) {
	root := t.TempDir()
	tool := &goTool{dir: "tools/x", pkg: "example.com/x/cmd/x", bin: "x"}
	dir := filepath.Join(root, tool.dir)
	write := func(sum string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"go.mod": "module example.com/tools/x\n", "go.sum": sum} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	key := func(p string) string {
		k, err := tool.cacheKey(ctx, root, parse(t, p))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write("example.com/x v1.0.0 h1:a=\n")
	k1, k1arm := key("linux/amd64"), key("linux/arm64")
	if k1 != key("linux/amd64") || k1 == k1arm || len(k1) != 16 {
		t.Errorf("keys %q (again %q), arm64 %q: want stable, 16 digits, per platform", k1, key("linux/amd64"), k1arm)
	}
	write("example.com/x v1.0.1 h1:b=\n")
	if k2 := key("linux/amd64"); k2 == k1 {
		t.Errorf("go.sum changed, key %q did not", k2)
	}
	if _, err := (&goTool{dir: "tools/none"}).cacheKey(ctx, root, parse(t, "linux/amd64")); err == nil {
		t.Error("a missing tool module gave a key")
	}
}
