package local

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/detect"
	"github.com/weftmesh/weft/internal/proctest"
)

// TestBinariesWithDiscovery runs both controllers (identity with static
// tokens, destination with a registry file and its own certificate) and
// two proxies, which reach the destination service over mTLS. The client
// proxy is told nothing about the service but its name: endpoints and the
// server's identity come from the destination service.
func TestBinariesWithDiscovery(t *testing.T) {
	m := newMesh(t)
	// The proxies reach the destination through a recorder: the wire. It
	// relays to the destination once that listens: the registry names the
	// server proxy's inbound address, known once that proxy listens.
	wire := startRecorder(t, "")
	discovery := []string{"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + wire.addr,
		"LINKERD2_PROXY_DESTINATION_SVC_NAME=" + dstID}
	b := m.startProxy(t, "api", discovery, "--inbound-forward", m.app)
	registry := m.write(t, "registry.yaml", fmt.Sprintf(`services:
- name: api.shop.svc.cluster.local:80
  labels: {dst_namespace: shop, dst_service: api}
  endpoints:
  - {addr: %q, meshed: true, identity: %s}
`, b["inbound"], apiID))
	dst := proctest.StartListening(t, "destination", nil, m.bin+"/weft-controller", "destination", "--registry", registry,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--identity-addr", m.idAddr, "--identity-trust-anchors-file", m.dir+"/ca.crt",
		"--identity-token-file", m.write(t, "dst.token", tokens["linkerd-destination"]))
	proctest.WaitReady(t, "http://"+dst["destination admin server"]+"/ready", 20*time.Second)
	wire.forward(dst["destination gRPC server"])
	a := m.startProxy(t, "web", discovery, "--bind", "127.0.0.1:0=api.shop.svc.cluster.local:80")
	proctest.WaitReady(t, "http://"+b["admin"]+"/ready", 20*time.Second)
	proctest.WaitReady(t, "http://"+a["admin"]+"/ready", 20*time.Second)
	checkMTLS(t, a["bind api.shop.svc.cluster.local:80"], a["admin"], b["admin"], apiID, m.now)

	// Every connection to the destination service was TLS from its first
	// byte, a ClientHello naming the destination's identity, with
	// application data both ways and no HTTP/2 preface in clear.
	ups, downs := wire.streams()
	if len(ups) == 0 {
		t.Fatal("no connection to the destination service went through the recorder")
	}
	for i := range ups {
		if bytes.Contains(ups[i], []byte(http2Preface)) {
			t.Errorf("connection %d: the HTTP/2 preface crossed in clear", i)
		}
		up, errUp := tlsRecordTypes(ups[i])
		down, errDown := tlsRecordTypes(downs[i])
		if errUp != nil || errDown != nil {
			t.Errorf("connection %d is not TLS: up %v, down %v", i, errUp, errDown)
			continue
		}
		sni, complete, ok := detect.ParseSNI(ups[i])
		if !complete || !ok || sni != dstID {
			t.Errorf("connection %d: first record's SNI %q, want a ClientHello naming %s", i, sni, dstID)
		}
		if up[23] == 0 || down[23] == 0 {
			t.Errorf("connection %d: no application data both ways (records up %v, down %v)", i, up, down)
		}
		t.Logf("connection %d to the destination: %d bytes up (TLS records by type %v), %d down (%v), SNI %s", i, len(ups[i]), up, len(downs[i]), down, sni)
	}

	// The control: a proxy without LINKERD2_PROXY_DESTINATION_SVC_NAME and a
	// destination in --plaintext: the same recorder sees the preface in
	// clear, so the checks above can fail.
	plain := proctest.StartListening(t, "destination-plaintext", nil, m.bin+"/weft-controller", "destination", "--registry", registry,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--plaintext")
	proctest.WaitReady(t, "http://"+plain["destination admin server"]+"/ready", 20*time.Second)
	plainWire := startRecorder(t, plain["destination gRPC server"])
	c := m.startProxy(t, "web", []string{"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + plainWire.addr}, "--bind", "127.0.0.1:0=api.shop.svc.cluster.local:80")
	proctest.WaitReady(t, "http://"+c["admin"]+"/ready", 20*time.Second)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c["bind api.shop.svc.cluster.local:80"] + "/")
	if err != nil {
		t.Fatalf("through the plaintext-discovery proxy: %v", err)
	}
	resp.Body.Close()
	ups, _ = plainWire.streams()
	if len(ups) == 0 || !bytes.Contains(bytes.Join(ups, nil), []byte(http2Preface)) {
		t.Errorf("control: the plaintext connection's preface was not seen (%d connections)", len(ups))
	} else if _, err := tlsRecordTypes(ups[0]); err == nil {
		t.Error("control: the plaintext connection passed the TLS check")
	}
}

// http2Preface starts every plaintext HTTP/2 (gRPC) connection.
const http2Preface = "PRI * HTTP/2.0"

const dstID = "linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local"
