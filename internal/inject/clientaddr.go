package inject

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Weft's client address (config.weft.io/preserve-client-address: "true",
// on the pod template or the namespace; docs/proxy.md): the proxy gets
// WEFT_PROXY_INBOUND_PRESERVE_CLIENT_ADDRESS=true and CAP_NET_ADMIN (for
// IP_TRANSPARENT and SO_MARK), linkerd-init --preserve-client-address
// (the mangle rules and the policy route).
//
// Kubernetes gives a container's added capabilities to a non-root process
// only through file capabilities (it sets no ambient capabilities), so the
// proxy runs as UID 0 with only NET_ADMIN in its bounding set, in the
// proxy's group (proxy.uid); linkerd-init lets that group's traffic out
// (--proxy-gid) as it does the proxy's UID. This is Istio's TPROXY
// arrangement (root, group 1337, NET_ADMIN). An app container running in
// that group would bypass the proxy, as an app running as the proxy's UID
// already does.

// preserveClientAddrProxy changes the proxy container's security context.
func preserveClientAddrProxy(sc *corev1.SecurityContext, v Values) {
	root, gid, no := int64(0), v.Proxy.UID, false
	sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = &root, &gid, &no
	sc.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"ALL"}}
}

// preserveClientAddrInitArgs are linkerd-init's extra arguments.
func preserveClientAddrInitArgs(v Values) []string {
	return []string{"--proxy-gid", strconv.FormatInt(v.Proxy.UID, 10), "--preserve-client-address"}
}
