package install

// VizChart is the viz extension's chart (weft viz install).
const VizChart = "weft-viz"

// JaegerChart is the jaeger extension's chart (weft jaeger install).
const JaegerChart = "weft-jaeger"
