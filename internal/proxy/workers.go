package proxy

import "math"

// Workers says how many cores the proxy runs Go code on (GOMAXPROCS),
// from Linkerd's proxy variables. Zero values are unset.
//
// Linkerd's proxy runs one worker unless told otherwise. Weft's runs two
// (or the one its machine has): measured side by side on a 2-CPU machine
// (issue 17, bench/results/issue17.md), one core cost a median 1.10x the
// CPU per request of two in the plaintext pair (1.07x with mTLS), and its
// GC stop-the-world pauses passed 100 µs in 4 of 10 runs of the mTLS pair,
// up to 1.1 ms (two cores: 1 of 6, 160 µs). Go's own default, every CPU of
// the node, is not kept either: a sidecar shares its node with the
// application it serves.
type Workers struct {
	// Fixed is LINKERD2_PROXY_CORES: alone (older Linkerd proxies' only
	// variable), exactly that many cores; else another name of Min.
	Fixed    int
	Min      int     // the fewest cores (LINKERD2_PROXY_CORES_MIN)
	Max      int     // the most cores (LINKERD2_PROXY_CORES_MAX)
	MaxRatio float64 // the most cores as a share of those available, in (0, 1] (LINKERD2_PROXY_CORES_MAX_RATIO); Max wins
}

// DefaultCores is how many cores the proxy runs on when nothing sets a
// maximum.
const DefaultCores = 2

// Cores is how many of available cores to use: Max, else MaxRatio of
// available rounded to the nearest whole core, else DefaultCores; then
// raised to Min (or Fixed) and lowered to available. It is at least 1.
func (w Workers) Cores(available int) int {
	available = max(available, 1)
	if w.Fixed > 0 && w.Min == 0 && w.Max == 0 && w.MaxRatio == 0 {
		return min(w.Fixed, available)
	}
	n := DefaultCores
	switch {
	case w.Max > 0:
		n = w.Max
	case w.MaxRatio > 0:
		n = int(math.Round(float64(available) * w.MaxRatio))
	}
	least := w.Min
	if least == 0 {
		least = w.Fixed
	}
	return max(min(max(n, least, 1), available), 1)
}
