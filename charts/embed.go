// Package charts embeds Weft's Helm charts (weft-crds, weft-control-plane,
// weft-viz), so that `weft install` and `weft viz install` render exactly
// the templates `helm install` does.
package charts

import "embed"

// FS holds charts/weft-crds, charts/weft-control-plane, charts/weft-viz and charts/weft-jaeger.
//
//go:embed all:weft-crds all:weft-control-plane all:weft-viz all:weft-jaeger
var FS embed.FS
