package dashboard

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

func TestHostCheckAndRelay(t *testing.T) {
	// A metrics API that refuses every request as an unknown kind.
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(metricsapi.ErrorBody{Error: metricsapi.ErrorDetail{Code: "unknown-kind", Message: "unknown resource type"}})
	}))
	defer api.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	re := regexp.MustCompile(DefaultEnforcedHost("linkerd-viz", "cluster.local"))
	h := Handler(&metricsapi.Client{Base: api.URL}, re, Config{GrafanaURL: "http://grafana:3000"}, log)
	hDead := Handler(&metricsapi.Client{Base: "http://" + deadAddr}, re, Config{}, log)
	for _, tc := range []struct {
		name, host, path string
		h                http.Handler
		status           int
		body             string
	}{
		{"foreign host", "evil.example.com", "/", h, 403, `Host "evil.example.com" does not match`},
		{"rebinding with a port", "attacker.example:8084", "/api/stat?kind=deploy&namespace=x", h, 403, "DNS-rebinding"},
		{"localhost", "localhost:50750", "/", h, 200, "<title>Weft viz</title>"},
		{"service name", "web.linkerd-viz.svc.cluster.local:8084", "/app.js", h, 200, "renderNamespaces"},
		{"config", "127.0.0.1:8084", "/api/config", h, 200, `"grafanaUrl":"http://grafana:3000"`},
		{"api error relayed", "127.0.0.1", "/api/stat?kind=deploy&namespace=x", h, 400, `"code":"unknown-kind"`},
		{"bad kind", "127.0.0.1", "/api/stat?kind=gadget", h, 400, `unknown resource type \"gadget\"`},
		{"metrics API down", "127.0.0.1", "/api/edges?kind=deploy&namespace=x", hDead, 502, "is unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			req.Host = tc.host
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, req)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("%d %q, want %d containing %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
		})
	}
}
