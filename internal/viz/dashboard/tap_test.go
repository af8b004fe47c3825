package dashboard

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
	"github.com/weftmesh/weft/internal/viz/tapapi"
)

func TestTapRelay(t *testing.T) {
	// A tap server that streams one request's three events to the
	// dashboard's token and refuses any other.
	tapSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(tapapi.TokenHeader) != "Bearer web-token" {
			http.Error(w, "tap denied: system:serviceaccount:linkerd-viz:web cannot watch deployments/tap", http.StatusForbidden)
			return
		}
		if want := tapapi.Path("shop", "deployments", "api"); r.URL.Path != want {
			http.Error(w, "path "+r.URL.Path+", want "+want, http.StatusNotFound)
			return
		}
		enc := json.NewEncoder(w)
		for _, ev := range []tapapi.Event{
			{ID: "0:1", Direction: "INBOUND", RequestInit: &tapapi.RequestInit{Method: "GET", Path: "/x"}},
			{ID: "0:1", Direction: "INBOUND", ResponseIn: &tapapi.ResponseInit{HTTPStatus: 200}},
			{ID: "0:1", Direction: "INBOUND", ResponseEnd: &tapapi.ResponseEnd{ResponseBytes: 2}},
		} {
			enc.Encode(ev)
		}
	}))
	defer tapSrv.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	re := regexp.MustCompile(DefaultEnforcedHost("linkerd-viz", "cluster.local"))
	api := &metricsapi.Client{Base: "http://127.0.0.1:1"}
	token := func(tok string) func() (string, error) { return func() (string, error) { return tok, nil } }
	for _, tc := range []struct {
		name   string
		tap    *Tap
		query  string
		status int
		body   []string
	}{
		{"relayed", &Tap{Client: &tapapi.Client{Base: tapSrv.URL}, Token: token("web-token")}, "kind=deploy&namespace=shop&name=api", 200,
			[]string{`"requestInitEvent":{"method":"GET"`, `"responseInitEvent":{"httpStatus":200`, `"responseEndEvent":{"sinceRequestInit":0,"sinceResponseInit":0,"responseBytes":2`}},
		{"refused", &Tap{Client: &tapapi.Client{Base: tapSrv.URL}, Token: token("other")}, "kind=deploy&namespace=shop&name=api", 502,
			[]string{`"code":"tap-failed"`, "tap denied: system:serviceaccount:linkerd-viz:web"}},
		{"not configured", nil, "kind=deploy&namespace=shop&name=api", 503, []string{"tap is not configured"}},
		{"bad kind", &Tap{Client: &tapapi.Client{Base: tapSrv.URL}}, "kind=gadget&namespace=shop&name=api", 400, []string{"unknown resource type"}},
		{"no name", &Tap{Client: &tapapi.Client{Base: tapSrv.URL}}, "kind=deploy&namespace=shop", 400, []string{"needs kind, namespace and name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(api, re, Config{Tap: tc.tap}, log)
			req := httptest.NewRequest("GET", "/api/tap?"+tc.query, nil)
			req.Host = "localhost:8084"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			for _, b := range tc.body {
				if !strings.Contains(rec.Body.String(), b) {
					t.Errorf("body lacks %q:\n%s", b, rec.Body.String())
				}
			}
		})
	}
}
