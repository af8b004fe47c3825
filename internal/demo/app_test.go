package demo

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/serving"
)

// TestAppListeners: a demo app binds port 0 and reports where in its
// address file, or serves on a socket handed to it (weft demo's explicit
// mode); either way it answers there, and stops when its context ends.
func TestAppListeners(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	tests := []struct {
		name  string
		setup func(t *testing.T, cfg *AppConfig) (addr func() string)
	}{
		{"port 0 reported in --addr-file", func(t *testing.T, cfg *AppConfig) func() string {
			cfg.Listen, cfg.AddrFile = "127.0.0.1:0", filepath.Join(t.TempDir(), "app.addrs.json")
			return func() string {
				addrs, err := serving.ReadAddrFile(cfg.AddrFile, 10*time.Second, nil)
				if err != nil {
					t.Fatal(err)
				}
				return addrs["demo emoji server"]
			}
		}},
		{"inherited socket (--listen-fd)", func(t *testing.T, cfg *AppConfig) func() string {
			f, addr, err := bindApp()
			if err != nil {
				t.Fatal(err)
			}
			// RunApp takes the descriptor over (and closes it), as the
			// app process does with descriptor 3: give it a copy of its own.
			fd, err := syscall.Dup(int(f.Fd()))
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			cfg.ListenFD = fd
			return func() string { return addr }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := AppConfig{Role: "emoji"}
			addr := tt.setup(t, &cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- RunApp(ctx, cfg, quiet) }()
			a := addr()
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + a + "/emoji")
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || len(b) == 0 {
				t.Errorf("GET /emoji: %s %q, want 200 and an emoji", resp.Status, b)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("RunApp: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("RunApp did not return within 10s of its context ending")
			}
			if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after the app stopped", a)
			}
		})
	}
}

// TestAppListenFDNotOpen: a descriptor that is not a socket is an error,
// not a panic.
func TestAppListenFDNotOpen(t *testing.T) {
	err := RunApp(context.Background(), AppConfig{Role: "voting", ListenFD: 987654}, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("RunApp with a closed descriptor: no error")
	}
}
