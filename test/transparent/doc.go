// Package transparent tests weft-proxy in transparent mode: two network
// namespaces made by the test, linkerd-init's iptables rules in each, and an
// unmodified client and server whose traffic crosses both proxies.
package transparent
