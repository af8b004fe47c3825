// Package charts embeds Weft's Helm charts (weft-crds, weft-control-plane),
// so that `weft install` renders exactly the templates `helm install` does.
package charts

import "embed"

// FS holds charts/weft-crds and charts/weft-control-plane.
//
//go:embed all:weft-crds all:weft-control-plane
var FS embed.FS
