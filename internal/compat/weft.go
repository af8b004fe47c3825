package compat

// Weft's own names, beyond Linkerd's: under Weft's domain, so they can
// never clash with a name Linkerd adds later. docs/compatibility.md lists
// them next to Linkerd's.
const (
	// AnnotationPreserveClientAddress ("true") makes the pod's inbound
	// proxy connect to the application from the client's own IP instead
	// of 127.0.0.1 (docs/proxy.md, "Client address").
	AnnotationPreserveClientAddress = "config.weft.io/preserve-client-address"
	// EnvPreserveClientAddress is the proxy's setting the annotation sets.
	EnvPreserveClientAddress = "WEFT_PROXY_INBOUND_PRESERVE_CLIENT_ADDRESS"
)
