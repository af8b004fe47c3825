package proxy

import (
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/serving"
)

// TestAddrFile: with every listener on port 0, the address file names
// where each one is bound, and the admin address it gives answers /ready.
func TestAddrFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "addrs.json")
	p := startProxy(t, func(c *Config) {
		c.AddrFile = path
		c.OutboundAddr = "127.0.0.1:0,127.0.0.1:0"
	}, "127.0.0.1:8080", "127.0.0.1:8081")
	got, err := serving.ReadAddrFile(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := p.Addrs()
	want := map[string]string{
		"admin": a[0].String(), "control": a[1].String(), "outbound": a[2].String(), "inbound": a[3].String(),
		"bind 127.0.0.1:8080": a[4].String(), "bind 127.0.0.1:8081": a[5].String(), "outbound 2": a[6].String(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("address file: got %v, want %v", got, want)
	}
	resp, err := http.Get("http://" + got["admin"] + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/ready at the reported admin address: got %d, want 200", resp.StatusCode)
	}
}

// TestAddrFileUnwritable: a proxy that cannot say where it listens does
// not start, and releases what it bound.
func TestAddrFileUnwritable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.OutboundAddr, cfg.InboundAddr, cfg.AdminAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.AddrFile = filepath.Join(t.TempDir(), "no-such-dir", "addrs.json")
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err == nil {
		t.Fatal("Start with an unwritable address file: got nil, want an error")
	}
	if len(p.listeners) != 4 {
		t.Fatalf("bound %d listeners, want 4", len(p.listeners))
	}
	for _, l := range p.listeners {
		if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Fatalf("listener %s still open", l.Addr())
		}
	}
}
