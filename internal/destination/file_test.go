package destination

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFileBackendLoads: every version of the registry file loaded counts,
// the first included; an invalid one does not, nor an unchanged file.
func TestFileBackendLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("services: []\n")
	b, err := NewFileBackend(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		content   string // "" leaves the file as it is
		wantErr   bool
		wantLoads int64
	}{
		{"", false, 1},
		{"services: [{name: web.shop.svc.cluster.local:80, endpoints: [{addr: 127.0.0.1:9001}]}]\n", false, 2},
		{"services: [{name: no-port}]\n", true, 2},
		{"services: []\n", false, 3},
	}
	for i, s := range steps {
		if s.content != "" {
			write(s.content)
		}
		_, err := b.reload()
		if (err != nil) != s.wantErr {
			t.Fatalf("step %d: reload error %v, want error %v", i, err, s.wantErr)
		}
		if got := b.Loads(); got != s.wantLoads {
			t.Errorf("step %d: Loads() = %d, want %d", i, got, s.wantLoads)
		}
	}
}
