package local

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proctest"
	"github.com/weftmesh/weft/internal/promtext"
)

func metric(t *testing.T, adminAddr, name string, labels ...string) float64 {
	t.Helper()
	v, err := promtext.SumAt(context.Background(), "http://"+adminAddr+"/metrics", name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBinariesMeshWithMTLS(t *testing.T) {
	m := newMesh(t)
	b := m.startProxy(t, "api", nil, "--inbound-forward", m.app)
	a := m.startProxy(t, "web", nil, "--dst", "api.shop:80=weft://"+apiID+"@"+b["inbound"], "--bind", "127.0.0.1:0=api.shop:80")
	proctest.WaitReady(t, "http://"+b["admin"]+"/ready", 20*time.Second)
	proctest.WaitReady(t, "http://"+a["admin"]+"/ready", 20*time.Second)
	checkMTLS(t, a["bind api.shop:80"], a["admin"], b["admin"], apiID, m.now)
}

// checkMTLS sends 20 requests to bind and checks both proxies saw them as
// mTLS between web and api.
func checkMTLS(t *testing.T, aBind, aAdmin, bAdmin, apiID string, now time.Time) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		resp, err := client.Post("http://"+aBind+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello web.shop.serviceaccount.identity.linkerd.cluster.local"; string(b) != want {
			t.Fatalf("request %d: %q, want %q", i, b, want)
		}
	}
	if got := metric(t, aAdmin, "response_total", `tls="true"`, `server_id="`+apiID+`"`, `classification="success"`); got != 20 {
		t.Errorf("web proxy: %v mTLS responses, want 20", got)
	}
	if got := metric(t, bAdmin, "request_total", `direction="inbound"`, `tls="true"`, `client_id="web.shop.serviceaccount.identity.linkerd.cluster.local"`); got != 20 {
		t.Errorf("api proxy: %v mTLS requests from web, want 20", got)
	}
	if exp := metric(t, aAdmin, "identity_cert_expiration_timestamp_seconds"); exp < float64(now.Add(11*time.Hour).Unix()) {
		t.Errorf("certificate expires at %v, want about 12h from now (capped by the issuer)", time.Unix(int64(exp), 0))
	}
}
