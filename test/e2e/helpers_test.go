//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// sum adds the samples of a Prometheus text exposition whose name and
// labels match.
func sum(metrics, name string, labels ...string) float64 {
	var total float64
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			var v float64
			f := strings.Fields(line)
			fmt.Sscanf(f[len(f)-1], "%g", &v)
			total += v
		}
	}
	return total
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
