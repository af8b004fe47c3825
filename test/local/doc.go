// Package local tests Weft's real binaries as processes on loopback, without
// Kubernetes: the identity controller in static-token mode and proxies that
// obtain certificates from it and talk mTLS.
package local
