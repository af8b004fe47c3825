// Package tapv1 is the generated code of Weft's tap API, version 1
// (tap.proto): proxies stream request metadata to the tap server.
package tapv1
