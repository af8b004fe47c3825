package kubeclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

func TestConfigAndClients(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Config(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != "t" {
		t.Errorf("Config: host %q token %q, want the file's", cfg.Host, cfg.BearerToken)
	}
	c, d, err := Clients(path, 5*time.Second)
	if err != nil || c == nil || d == nil {
		t.Fatalf("Clients: %v, %v, %v", c, d, err)
	}
	if _, _, err := Clients(filepath.Join(t.TempDir(), "missing"), 0); err == nil || !strings.Contains(err.Error(), "kubernetes client config") {
		t.Errorf("a missing kubeconfig: error %v, want one naming the client config", err)
	}
}
