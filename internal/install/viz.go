package install

// VizChart is the viz extension's chart (weft viz install).
const VizChart = "weft-viz"
