package viz

import (
	"context"
	"encoding/json"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/charts"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// dashboardVars are the values each template variable may take in the
// test's mesh; a panel passes when some combination gives it data.
var dashboardVars = map[string][]string{
	"namespace":  {"shop"},
	"deployment": {"api", "web"},
	"pod":        {"api-0", "web-0"},
	"service":    {"api"},
	"route":      {"books", "rest"},
	"authority":  nil, // web's outbound address, the Host its client sends: set by checkGrafanaPanels
}

var varRef = regexp.MustCompile(`\$(namespace|deployment|pod|service|route|authority)\b`)

// expand returns q with every combination of the variables it uses.
func expand(q string) []string {
	out := []string{q}
	for name, values := range dashboardVars {
		if !strings.Contains(q, "$"+name) {
			continue
		}
		var next []string
		for _, o := range out {
			for _, v := range values {
				next = append(next, strings.ReplaceAll(o, "$"+name, v))
			}
		}
		out = next
	}
	return out
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)

// checkGrafanaPanels runs every panel's query (and every variable's
// label_values query) of the chart's dashboards on the real Prometheus.
func checkGrafanaPanels(t *testing.T, m *vizMesh) {
	dashboardVars["authority"] = []string{m.webBind}
	q, err := metricsapi.NewPromQuerier(m.promURL)
	if err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(charts.FS, "weft-viz/grafana/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	queries := 0
	for _, f := range files {
		if strings.HasSuffix(f, "/route.json") && m.kube == nil {
			t.Logf("%s: skipped: route metrics need the policy controller (Kubernetes binaries)", f)
			continue
		}
		b, err := charts.FS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
			Templating struct {
				List []struct {
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		type check struct{ what, expr string }
		var checks []check
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				checks = append(checks, check{"panel " + p.Title, tg.Expr})
			}
		}
		for _, v := range d.Templating.List {
			qm, ok := v.Query.(map[string]any)
			if !ok {
				continue // the datasource variable
			}
			lv := labelValues.FindStringSubmatch(qm["query"].(string))
			if lv == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(...)", f, v.Name, qm["query"])
				continue
			}
			checks = append(checks, check{"variable " + v.Name, "count(" + lv[1] + ") by (" + lv[2] + ")"})
		}
		for _, c := range checks {
			ok := false
			for _, e := range expand(c.expr) {
				if varRef.MatchString(e) {
					t.Fatalf("%s: %s: unknown variable left in %q", f, c.what, e)
				}
				queries++
				v, err := q.Query(context.Background(), e, time.Now())
				if err != nil {
					t.Errorf("%s: %s: %q: %v", f, c.what, e, err)
					break
				}
				if len(v) > 0 {
					ok = true
					break
				}
			}
			if !ok {
				t.Errorf("%s: %s: %q returns no series for any of %v", f, c.what, c.expr, dashboardVars)
			}
		}
	}
	t.Logf("%d dashboards, %d queries run", len(files), queries)
}
