package proxy

import (
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/balance"
	"github.com/weftmesh/weft/internal/poll"
)

// TestOpaqueTransportResumesSessions: new opaque connections through a
// meshed pair resume the first one's TLS session, and the server's proxy
// still counts each with the client's verified identity.
func TestOpaqueTransportResumesSessions(t *testing.T) {
	m := newMesh(t)
	app := listenTCP(t, halfCloseEcho)
	b := meshedProxy(t, m.identity(t, apiID), nil)
	res := &routedResolver{target: "db.shop.svc.cluster.local:5432", pool: poolOf(app, balance.Peer{
		Meshed: true, Identity: apiID, Opaque: true, OpaquePort: portNum(t, b.inbound)})}
	a := startProxyWith(t, Options{Identity: m.identity(t, webID), Discovery: res},
		func(c *Config) { c.DestinationAddr = "127.0.0.1:1" }, "db.shop.svc.cluster.local:5432")
	const conns = 4
	for range conns {
		if got := exchange(t, a.bindings[0], "\x00\x03sql"); got != "\x00\x03sql|bye" {
			t.Fatalf("echo: got %q", got)
		}
	}
	poll.Until(t, 5*time.Second, "every connection counted with the client's identity", func() bool {
		return metricValue(t, b.metricsText(t), "tcp_open_total", map[string]string{"direction": "inbound", "peer": "src", "tls": "true", "client_id": webID}) == conns
	})
	tests := []struct {
		side    string
		p       *testProxy
		resumed string
		want    float64
	}{
		{"server", b, "false", 1},
		{"server", b, "true", conns - 1},
		{"client", a, "false", 1},
		{"client", a, "true", conns - 1},
	}
	for _, tt := range tests {
		got := metricValue(t, tt.p.metricsText(t), "identity_mesh_tls_handshakes_total", map[string]string{"side": tt.side, "resumed": tt.resumed})
		if got != tt.want {
			t.Errorf("identity_mesh_tls_handshakes_total{side=%q,resumed=%q} = %v, want %v", tt.side, tt.resumed, got, tt.want)
		}
	}
}
