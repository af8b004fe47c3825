// Package version reports the build's version, set at link time with
// -ldflags "-X github.com/weftmesh/weft/internal/version.Version=...".
package version

// Version is the release this binary was built from.
var Version = "dev"
