package metrics

import (
	"bufio"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TextContentType is the Prometheus text exposition format, version 0.0.4:
// what Linkerd's proxy serves and what every Prometheus scrapes.
const TextContentType = "text/plain; version=0.0.4; charset=utf-8"

// textHandler serves a registry in the text format only, uncompressed.
// promhttp's handler also negotiates the protobuf and OpenMetrics formats
// and gzip, which links protobuf's text and JSON marshalers and
// compress/flate into the proxy: ~0.3 MB of binary that the kernel maps
// into every proxy's RSS, for formats the proxy's scrapers do not ask for
// (issue 17). Like promhttp's default (HTTPErrorOnError), a gathering
// error is a 500.
type textHandler struct{ g prometheus.Gatherer }

func (h textHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	mfs, err := h.g.Gather()
	if err != nil {
		http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", TextContentType)
	bw := bufio.NewWriterSize(w, 16<<10)
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(bw, mf); err != nil {
			return // the scraper went away
		}
	}
	bw.Flush()
}
