//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tryOutput runs kubectl and returns its output or its error, for logs.
func tryOutput(t *testing.T, args ...string) string {
	home, _ := os.UserHomeDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(home, ".cache/weft/bin/kubectl"),
		append([]string{"--kubeconfig", kubeconfig(t)}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%v: %s", err, out)
	}
	return string(out)
}

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
