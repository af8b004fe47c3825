package dashboard

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
	"github.com/weftmesh/weft/internal/viz/tapapi"
)

// Tap reaches the tap server for the workload page's live tap, with the
// web server's own identity (its ServiceAccount token, which the chart
// allows to tap).
type Tap struct {
	Client *tapapi.Client
	// Token returns the bearer token to send (re-read: projected tokens rotate).
	Token func() (string, error)
}

// tapLimits bound one live tap: requests seen and time.
const (
	tapMaxRequests = 100
	tapMaxDuration = 2 * time.Minute
)

// serveTap relays GET /api/tap?kind=&namespace=&name= as JSON lines until
// the browser leaves, tapMaxRequests requests ended or tapMaxDuration.
func serveTap(t *Tap, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t == nil || t.Client == nil {
			writeJSON(w, http.StatusServiceUnavailable, metricsapi.ErrorBody{Error: metricsapi.ErrorDetail{Code: "tap-unavailable", Message: "tap is not configured for this dashboard (--tap-addr)"}})
			return
		}
		q := r.URL.Query()
		kind, err := metricsapi.ParseKind(q.Get("kind"))
		if err != nil {
			relayError(w, log, err)
			return
		}
		ns, name := q.Get("namespace"), q.Get("name")
		if name == "" || (ns == "" && kind != metricsapi.KindNamespace) {
			writeJSON(w, http.StatusBadRequest, metricsapi.ErrorBody{Error: metricsapi.ErrorDetail{Code: "bad-request", Message: "tap needs kind, namespace and name"}})
			return
		}
		c := *t.Client
		if t.Token != nil {
			if c.Token, err = t.Token(); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, metricsapi.ErrorBody{Error: metricsapi.ErrorDetail{Code: "tap-unavailable", Message: "the dashboard's token: " + err.Error()}})
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), tapMaxDuration)
		defer cancel()
		started := false
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		n := 0
		err = c.Watch(ctx, ns, tapapi.Plural(kind), name, tapapi.Request{MaxRPS: 10}, func(ev tapapi.Event) bool {
			if !started {
				started = true
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusOK)
			}
			if enc.Encode(&ev) != nil {
				return false
			}
			rc.Flush()
			if ev.ResponseEnd != nil {
				n++
			}
			return n < tapMaxRequests
		})
		if err != nil && !started {
			log.Warn("dashboard tap failed", "err", err)
			writeJSON(w, http.StatusBadGateway, metricsapi.ErrorBody{Error: metricsapi.ErrorDetail{Code: "tap-failed", Message: err.Error()}})
		}
	}
}
