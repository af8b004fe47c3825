package local

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/detect"
)

// TestBinariesWithDiscovery runs both controllers (identity with static
// tokens, destination with a registry file and its own certificate) and
// two proxies, which reach the destination service over mTLS. The client
// proxy is told nothing about the service but its name: endpoints and the
// server's identity come from the destination service.
func TestBinariesWithDiscovery(t *testing.T) {
	m := newMesh(t)
	bIn := freeAddr(t)
	registry := m.write(t, "registry.yaml", fmt.Sprintf(`services:
- name: api.shop.svc.cluster.local:80
  labels: {dst_namespace: shop, dst_service: api}
  endpoints:
  - {addr: %q, meshed: true, identity: %s}
`, bIn, apiID))
	var dstAddr string
	startReady(t, "destination", func() ([]string, string) {
		dstAddr = freeAddr(t)
		dstAdmin := freeAddr(t)
		return []string{m.bin + "/weft-controller", "destination", "--registry", registry, "--addr", dstAddr, "--admin-addr", dstAdmin,
			"--identity-addr", m.idAddr, "--identity-trust-anchors-file", m.dir + "/ca.crt",
			"--identity-token-file", m.write(t, "dst.token", tokens["linkerd-destination"])}, "http://" + dstAdmin + "/ready"
	})

	// The proxies reach the destination through a recorder: the wire.
	wire := startRecorder(t, dstAddr)
	discovery := []string{"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + wire.addr,
		"LINKERD2_PROXY_DESTINATION_SVC_NAME=" + dstID}
	bAdmin := freeAddr(t)
	start(t, "proxy-api", append(m.proxyEnv(t, "api"), discovery...), m.bin+"/weft-proxy", "--admin-addr", bAdmin,
		"--control-addr", freeAddr(t), "--outbound-addr", freeAddr(t), "--inbound-addr", bIn, "--inbound-forward", m.app)
	aBind := freeAddr(t)
	aAdmin, _ := m.startProxy(t, "web", discovery, "--bind", aBind+"=api.shop.svc.cluster.local:80")
	waitReady(t, "http://"+bAdmin+"/ready")
	waitReady(t, "http://"+aAdmin+"/ready")
	checkMTLS(t, aBind, aAdmin, bAdmin, apiID, m.now)

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
	var plainAddr string
	startReady(t, "destination-plaintext", func() ([]string, string) {
		plainAddr = freeAddr(t)
		admin := freeAddr(t)
		return []string{m.bin + "/weft-controller", "destination", "--registry", registry, "--addr", plainAddr, "--admin-addr", admin, "--plaintext"}, "http://" + admin + "/ready"
	})
	plainWire := startRecorder(t, plainAddr)
	cBind := freeAddr(t)
	cAdmin, _ := m.startProxy(t, "web", []string{"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + plainWire.addr}, "--bind", cBind+"=api.shop.svc.cluster.local:80")
	waitReady(t, "http://"+cAdmin+"/ready")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + cBind + "/")
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
