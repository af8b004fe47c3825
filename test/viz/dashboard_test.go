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

	checkTopology(t, ctx, wantSR)

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

// topology is what the workload page's SVG graph shows, read from its DOM.
type topology struct {
	Edges int // the svg's data-edges
	Nodes []struct{ Name, Role, Label, NS string }
	Lines []struct{ Src, Dst, MTLS, SR, Class, Text string }
	// Drawn counts the edges' <line> elements with an arrow head.
	Drawn int
}

const readTopology = `(() => {
  const s = document.querySelector("#topology");
  const txt = (g, sel) => { const e = g.querySelector(sel); return e ? e.textContent : ""; };
  return {
    Edges: Number(s.dataset.edges),
    Nodes: [...s.querySelectorAll("g.node")].map(g => ({Name: g.dataset.name, Role: g.dataset.role, Label: txt(g, "text.label"), NS: txt(g, "text.ns")})),
    Lines: [...s.querySelectorAll("g.edge")].map(g => ({Src: g.dataset.src, Dst: g.dataset.dst, MTLS: g.dataset.mtls, SR: g.dataset.sr || "", Class: g.getAttribute("class"), Text: txt(g, "text")})),
    Drawn: s.querySelectorAll("g.edge line[marker-end]").length,
  };
})()`

// checkTopology opens api's and web's workload pages from the namespace
// page and reads their topology graphs: web → api, one mTLS edge coloured
// by its success rate (the client's, within 5 %).
func checkTopology(t *testing.T, ctx context.Context, wantSR float64) {
	for _, tc := range []struct {
		workload, peer, peerRole string
	}{
		{"api", "web", "source"},
		{"web", "api", "destination"},
	} {
		var g topology
		err := chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](`location.hash = "#/namespaces/shop"`),
			chromedp.WaitVisible(`table[data-kind="deployment"] tr[data-name="`+tc.workload+`"] a.wl`),
			chromedp.Click(`table[data-kind="deployment"] tr[data-name="`+tc.workload+`"] a.wl`),
			chromedp.WaitVisible(`svg#topology g.node.self[data-name="shop/`+tc.workload+`"]`),
			chromedp.WaitVisible(`svg#topology g.edge[data-sr]`),
		)
		if err == nil {
			g, err = chromedp.Run(ctx, chromedp.Evaluate[topology](readTopology))
		}
		if err != nil {
			screenshot(t, ctx, "dashboard-workload-"+tc.workload+"-failed.png")
			t.Fatalf("workload page of %s: %v", tc.workload, err)
		}
		screenshot(t, ctx, "dashboard-workload-"+tc.workload+".png")
		t.Logf("topology of %s: %+v", tc.workload, g)
		roles := map[string]string{}
		for _, n := range g.Nodes {
			roles[n.Label] = n.Role
			if n.NS != "" {
				t.Errorf("%s: node %s labelled with namespace %q, want none (same namespace)", tc.workload, n.Label, n.NS)
			}
		}
		if want := map[string]string{tc.workload: "self", tc.peer: tc.peerRole}; len(roles) != len(want) || roles[tc.workload] != "self" || roles[tc.peer] != tc.peerRole {
			t.Errorf("%s: nodes %+v, want %v", tc.workload, g.Nodes, want)
		}
		if g.Edges != 1 || len(g.Lines) != 1 || g.Drawn != 1 {
			t.Fatalf("%s: %d edges (%d groups, %d arrows), want 1", tc.workload, g.Edges, len(g.Lines), g.Drawn)
		}
		e := g.Lines[0]
		if e.Src != "shop/web" || e.Dst != "shop/api" || e.MTLS != "true" || !strings.Contains(e.Text, "mTLS") || strings.Contains(e.Text, "no mTLS") {
			t.Errorf("%s: edge %+v, want shop/web → shop/api over mTLS", tc.workload, e)
		}
		sr, err := strconv.ParseFloat(e.SR, 64)
		if err != nil {
			t.Fatalf("%s: edge success rate %q: %v", tc.workload, e.SR, err)
		}
		within(t, tc.workload+" graph edge success rate", &sr, wantSR)
		// The client sees 80 %: below 90 % the edge is drawn red.
		if !strings.Contains(e.Class, "sr-bad") {
			t.Errorf("%s: edge classes %q, want sr-bad for %.3f", tc.workload, e.Class, sr)
		}
	}
}
