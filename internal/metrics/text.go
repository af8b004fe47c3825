package metrics

import (
	"bufio"
	"compress/gzip"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TextContentType is the Prometheus text exposition format, version 0.0.4:
// what Linkerd's proxy serves and what every Prometheus scrapes.
const TextContentType = "text/plain; version=0.0.4; charset=utf-8"

// textHandler serves a registry in the text format only, gzipped when the
// scraper accepts gzip, as Linkerd's proxy does. promhttp's handler also
// negotiates the protobuf and OpenMetrics formats, which links protobuf's
// text and JSON marshalers into the proxy: ~0.3 MB of binary that the
// kernel maps into every proxy's RSS, for formats the proxy's scrapers do
// not need (issue 17). Like promhttp's default (HTTPErrorOnError), a
// gathering error is a 500.
type textHandler struct{ g prometheus.Gatherer }

func (h textHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	mfs, err := h.g.Gather()
	if err != nil {
		http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", TextContentType)
	var out io.Writer = w
	if acceptsGzip(req) {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		out = gz
	}
	bw := bufio.NewWriterSize(out, 16<<10)
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(bw, mf); err != nil {
			return // the scraper went away
		}
	}
	bw.Flush()
}

func acceptsGzip(req *http.Request) bool {
	for _, v := range req.Header.Values("Accept-Encoding") {
		if strings.Contains(v, "gzip") {
			return true
		}
	}
	return false
}
