//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// sum adds the samples of a Prometheus text exposition whose name and
// labels (key="value") match.
func sum(t *testing.T, metrics, name string, labels ...string) float64 {
	t.Helper()
	v, err := promtext.Sum(metrics, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitInjector waits until the API server reaches the proxy injector:
// a server-side dry run of a pod in an annotated namespace comes back with
// the proxy (dry runs call mutating webhooks). Until the injector's
// endpoints are published, pods are admitted unmeshed (failurePolicy Ignore).
func waitInjector(t *testing.T) {
	t.Helper()
	kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: weft-probe, annotations: {linkerd.io/inject: enabled}}\n", "apply", "-f", "-")
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: probe, namespace: weft-probe}\nspec: {containers: [{name: app, image: weft.local/testapp:dev}]}\n"
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		out, _ := runKubectl(t, pod, "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.containers[*].name}")
		if strings.Contains(out, "linkerd-proxy") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy injector did not answer admission within 90s (last: %s)", out)
		}
	}
}

// proxyMetrics scrapes a meshed pod's proxy admin port (4191) through the
// API server's pod proxy.
//
// The API server's proxy to the pod can fail for a moment (a dial through
// the node while it is busy), so a failed read is tried again, up to 5
// times a second apart, before the test fails.
func proxyMetrics(t *testing.T, ns, pod string) string {
	t.Helper()
	args := []string{"get", "--raw", "/api/v1/namespaces/" + ns + "/pods/" + pod + ":4191/proxy/metrics"}
	for i := 1; ; i++ {
		out, err := runKubectl(t, "", args...)
		if err == nil {
			return out
		}
		if i == 5 {
			t.Fatalf("kubectl %s: %v (%d tries)\n%s", strings.Join(args, " "), err, i, out)
		}
		time.Sleep(time.Second)
	}
}

// samples maps each sample line's series (name and labels) of the named
// metrics to its value.
func samples(metrics string, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		for _, name := range names {
			if !strings.HasPrefix(line, name+"{") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			var v float64
			fmt.Sscanf(line[i+1:], "%g", &v)
			out[line[:i]] = v
		}
	}
	return out
}

// grown lists the series of after whose value grew since before (new
// series included), sorted, each as "series delta".
func grown(before, after map[string]float64) []string {
	var out []string
	for s, v := range after {
		if d := v - before[s]; d > 0 {
			out = append(out, fmt.Sprintf("%s +%g", s, d))
		}
	}
	sort.Strings(out)
	return out
}

// label returns the value of a label in a series ("" if absent).
func label(series, name string) string {
	i := strings.Index(series, "{"+name+`="`)
	if i < 0 {
		i = strings.Index(series, ","+name+`="`)
	}
	if i < 0 {
		return ""
	}
	rest := series[i+len(name)+3:]
	return rest[:strings.IndexByte(rest, '"')]
}
