package local

import (
	"fmt"
	"testing"
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

	discovery := []string{"LINKERD2_PROXY_DESTINATION_SVC_ADDR=" + dstAddr,
		"LINKERD2_PROXY_DESTINATION_SVC_NAME=linkerd-destination.linkerd.serviceaccount.identity.linkerd.cluster.local"}
	bAdmin := freeAddr(t)
	start(t, "proxy-api", append(m.proxyEnv(t, "api"), discovery...), m.bin+"/weft-proxy", "--admin-addr", bAdmin,
		"--control-addr", freeAddr(t), "--outbound-addr", freeAddr(t), "--inbound-addr", bIn, "--inbound-forward", m.app)
	aBind := freeAddr(t)
	aAdmin, _ := m.startProxy(t, "web", discovery, "--bind", aBind+"=api.shop.svc.cluster.local:80")
	waitReady(t, "http://"+bAdmin+"/ready")
	waitReady(t, "http://"+aAdmin+"/ready")
	checkMTLS(t, aBind, aAdmin, bAdmin, apiID, m.now)
}
