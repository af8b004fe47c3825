// Package dashboard is viz's web dashboard: embedded static assets (a
// single page that lists namespaces and their workloads with golden
// metrics and edges, and a workload's topology graph and live tap), a JSON API that relays the
// metrics API and the tap server, and the
// Host check against DNS rebinding (enforcedHostRegexp).
package dashboard

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"regexp"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

//go:embed assets
var assets embed.FS

// DefaultEnforcedHost is Linkerd's default enforcedHostRegexp for the
// dashboard in namespace ns of cluster domain: localhost, loopback and the
// web Service's in-cluster names, any port.
func DefaultEnforcedHost(ns, clusterDomain string) string {
	return fmt.Sprintf(`^(localhost|127\.0\.0\.1|web\.%s\.svc\.%s|web\.%s\.svc|\[::1\])(:\d+)?$`,
		regexp.QuoteMeta(ns), regexp.QuoteMeta(clusterDomain), regexp.QuoteMeta(ns))
}

// Config is what the page needs besides metrics.
type Config struct {
	// GrafanaURL links workloads to Grafana's dashboards ("" for none);
	// GrafanaExternalURL, when set, is the address the browser uses.
	GrafanaURL, GrafanaExternalURL string
	JaegerURL                      string
	Version                        string
	// Tap, when set, serves the workload page's live tap.
	Tap *Tap
}

// Handler serves the dashboard; requests whose Host does not match
// enforcedHost get 403.
func Handler(api *metricsapi.Client, enforcedHost *regexp.Regexp, cfg Config, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/config", func(w http.ResponseWriter, _ *http.Request) {
		grafana := cfg.GrafanaExternalURL
		if grafana == "" {
			grafana = cfg.GrafanaURL
		}
		writeJSON(w, http.StatusOK, map[string]string{"grafanaUrl": grafana, "jaegerUrl": cfg.JaegerURL, "version": cfg.Version})
	})
	mux.HandleFunc("GET /api/stat", func(w http.ResponseWriter, r *http.Request) {
		req, err := metricsapi.StatRequestFromQuery(r.URL.Query())
		if err != nil {
			relayError(w, log, err)
			return
		}
		resp, err := api.Stat(r.Context(), req)
		if err != nil {
			relayError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("GET /api/edges", func(w http.ResponseWriter, r *http.Request) {
		req, err := metricsapi.EdgeRequestFromQuery(r.URL.Query())
		if err != nil {
			relayError(w, log, err)
			return
		}
		resp, err := api.Edges(r.Context(), req)
		if err != nil {
			relayError(w, log, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("GET /api/tap", serveTap(cfg.Tap, log))
	return hostCheck(enforcedHost, mux)
}

// hostCheck refuses requests whose Host header does not match re (DNS
// rebinding: a foreign page resolving its own name to the dashboard).
func hostCheck(re *regexp.Regexp, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !re.MatchString(r.Host) {
			http.Error(w, fmt.Sprintf("Host %q does not match the dashboard's enforced host regexp %s: refused (DNS-rebinding protection; set dashboard.enforcedHostRegexp to admit it)",
				r.Host, re), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// relayError answers with the metrics API's error, or 502 when the
// metrics API itself cannot be reached.
func relayError(w http.ResponseWriter, log *slog.Logger, err error) {
	var ae *metricsapi.APIError
	if errors.As(err, &ae) {
		writeJSON(w, ae.Status, metricsapi.ErrorBody{Error: ae.ErrorDetail})
		return
	}
	var ne net.Error
	code := "metrics-api-unavailable"
	if !errors.As(err, &ne) {
		code = "bad-request"
	}
	log.Warn("dashboard request failed", "err", err)
	status := http.StatusBadGateway
	if code == "bad-request" {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, metricsapi.ErrorBody{Error: metricsapi.ErrorDetail{Code: code, Message: err.Error()}})
}
