package controller

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/kubetest"
	"github.com/weftmesh/weft/internal/proctest"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitReady polls the admin server's /ready, at most 10 s.
func waitReady(t *testing.T, admin string) {
	t.Helper()
	proctest.WaitReady(t, "http://"+admin+"/ready", 10*time.Second)
}

// result waits (bounded) for what a server function returned.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("still serving 10s after a server failed: the failure went unnoticed")
		return nil
	}
}

// TestServersEndWhenOneFails: a component (identity's gRPC + admin, the
// injector's webhook + admin) whose main or admin listener is closed under
// it returns an error naming that server instead of running on without
// it; ending ctx returns nil.
func TestServersEndWhenOneFails(t *testing.T) {
	dir := t.TempDir()
	ca, err := kubetest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	crt, key, err := ca.Issue("injector", "linkerd-proxy-injector.linkerd.svc", nil, nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	components := []struct {
		name  string
		main  string // how errors name the main server
		serve func(ctx context.Context, l, al net.Listener) error
	}{
		{"identity", "identity gRPC server", func(ctx context.Context, l, al net.Listener) error {
			c := component{name: "identity", srv: grpc.NewServer(), metrics: prometheus.NewRegistry(), ready: func() bool { return true },
				grace: time.Second, log: quiet}
			return serveOn(ctx, c, l, al)
		}},
		{"injector", "injector webhook server", func(ctx context.Context, l, al net.Listener) error {
			return serveWebhook(ctx, quiet, "injector", http.NotFoundHandler(), &certReloader{cert: crt, key: key}, l, al, prometheus.NewRegistry())
		}},
	}
	admin := map[string]string{"identity": "identity admin server", "injector": "injector admin server"}
	for _, c := range components {
		for _, tt := range []struct {
			name    string
			close   string // main, admin, or "" (ctx ends)
			wantErr string
		}{
			{"main listener closed", "main", c.main + " on 127.0.0.1:"},
			{"admin listener closed", "admin", admin[c.name] + " on 127.0.0.1:"},
			{"context ends", "", ""},
		} {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				l, al := listen(t), listen(t)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- c.serve(ctx, l, al) }()
				waitReady(t, al.Addr().String())
				switch tt.close {
				case "main":
					l.Close()
				case "admin":
					al.Close()
				default:
					cancel()
				}
				err := result(t, done)
				switch {
				case tt.wantErr == "" && err != nil:
					t.Errorf("got %v, want nil", err)
				case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
					t.Errorf("got %v, want an error naming %q", err, tt.wantErr)
				}
			})
		}
	}
}

// TestRunInjectorUnusableCertificate: a serving key pair that does not load
// stops the injector at start with an error naming it (before it needs
// the API server).
func TestRunInjectorUnusableCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := kubetest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	anchors := filepath.Join(dir, "ca-bundle.crt")
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(anchors, ca.PEM(), 0o600)
	os.WriteFile(crt, ca.PEM(), 0o600)
	os.WriteFile(key, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600)
	done := make(chan error, 1)
	go func() {
		done <- RunInjector(context.Background(), InjectorOptions{ControllerNS: "linkerd", TrustAnchors: anchors, TLSCert: crt, TLSKey: key,
			Kubeconfig: filepath.Join(dir, "no-kubeconfig"), Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}, slog.Default())
	}()
	if err := result(t, done); err == nil || !strings.Contains(err.Error(), "serving certificate") {
		t.Errorf("RunInjector = %v, want an error naming the serving certificate", err)
	}
}
