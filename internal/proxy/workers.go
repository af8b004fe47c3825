package proxy

import "math"

// Workers says how many cores the proxy runs Go code on (GOMAXPROCS),
// sized as Linkerd's proxy sizes its runtime: one core unless told
// otherwise, since a sidecar shares its pod's and its node's CPUs with the
// application it serves (issue 17 measured one core at ~0.88x the CPU per
// request of two). Zero values are unset.
type Workers struct {
	Min      int     // the fewest cores (LINKERD2_PROXY_CORES_MIN, else LINKERD2_PROXY_CORES)
	Max      int     // the most cores (LINKERD2_PROXY_CORES_MAX)
	MaxRatio float64 // the most cores as a share of those available, in (0, 1] (LINKERD2_PROXY_CORES_MAX_RATIO); Max wins
}

// Cores is how many of available cores to use: Max, else MaxRatio of
// available rounded to the nearest whole core, else 1; then raised to Min
// and lowered to available. It is at least 1.
func (w Workers) Cores(available int) int {
	available = max(available, 1)
	n := 1
	switch {
	case w.Max > 0:
		n = w.Max
	case w.MaxRatio > 0:
		n = int(math.Round(float64(available) * w.MaxRatio))
	}
	return max(min(max(n, w.Min, 1), available), 1)
}
