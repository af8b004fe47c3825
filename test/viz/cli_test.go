package viz

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// weft runs the CLI against the test's metrics API.
func (m *vizMesh) weft(args ...string) (string, error) { return m.weftAt(m.apiURL, args...) }

// weftAt runs the CLI against the metrics API at url.
func (m *vizMesh) weftAt(url string, args ...string) (string, error) {
	out, err := exec.Command(m.bin+"/weft", append(args, "--metrics-api-addr", url)...).CombinedOutput()
	return string(out), err
}

func checkCLI(t *testing.T, m *vizMesh, wantRPS, wantSR float64) {
	out, err := m.weft("viz", "stat", "deploy", "-n", "shop", "-t", "10s")
	if err != nil {
		t.Fatalf("weft viz stat: %v\n%s", err, out)
	}
	t.Logf("weft viz stat deploy -n shop -t 10s:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME MESHED SUCCESS RPS LATENCY_P50 LATENCY_P95 LATENCY_P99 TCP_CONN" {
		t.Errorf("header = %q", lines[0])
	}
	row := regexp.MustCompile(`(?m)^api\s+1\s+([0-9.]+)%\s+([0-9.]+)rps\s+\d+ms\s+\d+ms\s+\d+ms\s+\d+$`).FindStringSubmatch(out)
	if row == nil {
		t.Fatalf("no api row like 'api 1 80.00%% 40.0rps 5ms 9ms 10ms 4' in\n%s", out)
	}
	sr, _ := strconv.ParseFloat(row[1], 64)
	rps, _ := strconv.ParseFloat(row[2], 64)
	sr /= 100
	within(t, "CLI success rate", &sr, wantSR)
	within(t, "CLI rps", &rps, wantRPS)
	if !regexp.MustCompile(`(?m)^web\s+1\s+-\s+-\s+-\s+-\s+-\s+`).MatchString(out) {
		t.Errorf("no web row without traffic in\n%s", out)
	}

	out, err = m.weft("viz", "stat", "deploy/web", "--to", "deploy/api", "-n", "shop", "-t", "10s", "-o", "json")
	if err != nil {
		t.Fatalf("weft viz stat --to -o json: %v\n%s", err, out)
	}
	var resp metricsapi.StatResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Rows) != 1 {
		t.Fatalf("json: %v %s", err, out)
	}
	within(t, "CLI web --to api rps", resp.Rows[0].RPS, wantRPS)

	out, err = m.weft("viz", "edges", "deploy", "-n", "shop", "-o", "wide", "-t", "10s")
	if err != nil {
		t.Fatalf("weft viz edges: %v\n%s", err, out)
	}
	t.Logf("weft viz edges deploy -n shop -o wide:\n%s", out)
	if !regexp.MustCompile(`(?m)^web\s+api\s+shop\s+shop\s+` + regexp.QuoteMeta(webID) + `\s+` + regexp.QuoteMeta(apiID) + `\s+-$`).MatchString(out) {
		t.Errorf("no web → api edge with both identities in\n%s", out)
	}
	out, err = m.weft("viz", "edges", "deploy", "-n", "shop")
	if err != nil || !regexp.MustCompile(`(?m)^web\s+api\s+shop\s+shop\s+√$`).MatchString(out) {
		t.Errorf("weft viz edges: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"viz", "stat", "gadgets"}, `unknown resource type "gadgets"`},
		{[]string{"viz", "stat", "deploy/nope", "-n", "shop"}, `deployment/nope in namespace "shop" is not meshed`},
		{[]string{"viz", "stat", "deploy", "-n", "shop", "--from", "svc/api"}, "--from cannot be a service"},
	} {
		out, err := m.weft(tc.args...)
		if err == nil || !strings.Contains(out, tc.msg) {
			t.Errorf("weft %s: %v, output %q; want a failure saying %q", strings.Join(tc.args, " "), err, out, tc.msg)
		}
	}
	out, err = m.weft("viz", "check")
	if err != nil || !strings.Contains(out, "√ the metrics API can query Prometheus") {
		t.Errorf("weft viz check: %v\n%s", err, out)
	}
	b, err := exec.Command(m.bin+"/weft", "viz", "check", "--metrics-api-addr", deadAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "× the metrics API answers") {
		t.Errorf("weft viz check with no metrics API: %v\n%s", err, b)
	}
}
