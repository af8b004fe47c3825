package viz

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/weftmesh/weft/internal/proctest"
)

// artefactDir is where screenshots go: $WEFT_VIZ_ARTIFACTS, else the
// test's temporary folder (logged).
func artefactDir(t *testing.T) string {
	if d := os.Getenv("WEFT_VIZ_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (apt-get install chromium)")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// startWeb runs weft-controller web on the given metrics API and returns
// its base URL.
func (m *vizMesh) startWeb(t *testing.T, name, metricsAPI string) string {
	t.Helper()
	a := proctest.StartListening(t, name, nil, m.bin+"/weft-controller", "web", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--metrics-api-addr", metricsAPI, "--grafana-url", "http://grafana.example:3000")
	waitReady(t, "http://"+a["web admin server"]+"/ready")
	return "http://" + a["web server"]
}

func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(requireChromium(t)),
		chromedp.NoSandbox, chromedp.WindowSize(1400, 700), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(artefactDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func checkDashboard(t *testing.T, m *vizMesh, wantSR float64) {
	web := m.startWeb(t, "web", m.apiURL)

	// DNS-rebinding protection: a foreign Host is refused, ours admitted.
	for host, want := range map[string]int{"evil.example.com": 403, "localhost:8084": 200, strings.TrimPrefix(web, "http://"): 200} {
		req, _ := http.NewRequest("GET", web+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d (%s)", host, resp.StatusCode, want, b)
		}
	}

	ctx := browser(t)
	var sr, rps, edge string
	err := chromedp.Do(ctx,
		chromedp.Navigate(web+"/"),
		chromedp.WaitVisible(`table[data-kind="namespace"] tr[data-name="shop"]`),
		chromedp.Click(`tr[data-name="shop"] a`),
		chromedp.WaitVisible(`table[data-kind="deployment"] tr[data-name="api"] td.sr span.warn, table[data-kind="deployment"] tr[data-name="api"] td.sr span.bad`),
		chromedp.WaitVisible(`table[data-kind="edges"]`),
	)
	if err == nil {
		sr, err = chromedp.Run(ctx, chromedp.Text(`table[data-kind="deployment"] tr[data-name="api"] td.sr`))
	}
	if err == nil {
		rps, err = chromedp.Run(ctx, chromedp.Text(`table[data-kind="deployment"] tr[data-name="api"] td.rps`))
	}
	if err == nil {
		edge, err = chromedp.Run(ctx, chromedp.Text(`table[data-kind="edges"] tbody`))
	}
	if err != nil {
		screenshot(t, ctx, "dashboard-failed.png")
		t.Fatalf("dashboard: %v", err)
	}
	screenshot(t, ctx, "dashboard-namespace-shop.png")
	got, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(sr), "%"), 64)
	if err != nil {
		t.Fatalf("success rate cell %q: %v", sr, err)
	}
	got /= 100
	within(t, "dashboard api success rate", &got, wantSR)
	if !strings.HasSuffix(strings.TrimSpace(rps), "rps") {
		t.Errorf("rps cell %q", rps)
	}
	if !strings.Contains(edge, "shop/web") || !strings.Contains(edge, "shop/api") || !strings.Contains(edge, webID) || !strings.Contains(edge, apiID) {
		t.Errorf("edges table %q, want web → api with both identities", edge)
	}

	// Degraded: the metrics API is gone; the page says so.
	dead := m.startWeb(t, "web-degraded", deadAddr(t))
	err = chromedp.Do(ctx, chromedp.Navigate(dead+"/#/namespaces/shop"), chromedp.WaitVisible(`#error`))
	var banner string
	if err == nil {
		banner, err = chromedp.Run(ctx, chromedp.Text(`#error`))
	}
	if err != nil {
		t.Fatalf("degraded dashboard: %v", err)
	}
	screenshot(t, ctx, "dashboard-degraded.png")
	if !strings.Contains(banner, "Metrics are unavailable") || !strings.Contains(banner, "unreachable") {
		t.Errorf("degraded banner %q, want it to say the metrics API is unreachable", banner)
	}
}
