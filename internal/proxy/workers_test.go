package proxy

import "testing"

func TestWorkersCores(t *testing.T) {
	for _, tt := range []struct {
		name      string
		w         Workers
		available int
		want      int
	}{
		{"unset: two cores", Workers{}, 8, 2},
		{"unset on one CPU", Workers{}, 1, 1},
		{"legacy LINKERD2_PROXY_CORES alone: exactly", Workers{Fixed: 1}, 8, 1},
		{"legacy alone, above available", Workers{Fixed: 16}, 8, 8},
		{"legacy with a minimum: the minimum wins", Workers{Fixed: 4, Min: 1}, 8, 2},
		{"legacy with a maximum: a minimum", Workers{Fixed: 3, Max: 1}, 8, 3},
		{"min 1 (the injector's default)", Workers{Fixed: 1, Min: 1}, 8, 2},
		{"min", Workers{Min: 3}, 8, 3},
		{"min above available", Workers{Min: 4}, 2, 2},
		{"max", Workers{Max: 3}, 8, 3},
		{"max 1", Workers{Min: 1, Max: 1}, 8, 1},
		{"max above available", Workers{Max: 16}, 8, 8},
		{"min above max", Workers{Min: 4, Max: 2}, 8, 4},
		{"ratio", Workers{MaxRatio: 0.5}, 8, 4},
		{"ratio rounds to nearest", Workers{MaxRatio: 0.3}, 8, 2},
		{"ratio rounds half up", Workers{MaxRatio: 0.25}, 6, 2},
		{"small ratio: at least one", Workers{MaxRatio: 0.1}, 2, 1},
		{"ratio of all", Workers{MaxRatio: 1}, 6, 6},
		{"max wins over ratio", Workers{Max: 2, MaxRatio: 1}, 8, 2},
		{"min above ratio", Workers{Min: 3, MaxRatio: 0.25}, 4, 3},
		{"nothing available counts as one", Workers{Max: 4}, 0, 1},
	} {
		if got := tt.w.Cores(tt.available); got != tt.want {
			t.Errorf("%s: %+v.Cores(%d) = %d, want %d", tt.name, tt.w, tt.available, got, tt.want)
		}
	}
}

// As Linkerd's proxy: LINKERD2_PROXY_CORES_MIN wins over the older
// LINKERD2_PROXY_CORES, whichever way round they are listed; the older
// one alone sets the cores exactly, as it did for Linkerd's older proxies.
func TestCoresVariables(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want int // of 8
	}{
		{map[string]string{"LINKERD2_PROXY_CORES": "4", "LINKERD2_PROXY_CORES_MIN": "3"}, 3},
		{map[string]string{"LINKERD2_PROXY_CORES_MIN": "3", "LINKERD2_PROXY_CORES": "4"}, 3},
		{map[string]string{"LINKERD2_PROXY_CORES": "1"}, 1},
		{map[string]string{"LINKERD2_PROXY_CORES": "1", "LINKERD2_PROXY_CORES_MIN": "1"}, 2},
		{map[string]string{"LINKERD2_PROXY_CORES_MAX": "1"}, 1},
		{map[string]string{"LINKERD2_PROXY_CORES_MAX_RATIO": "0.75"}, 6},
		{map[string]string{}, 2},
	} {
		c := DefaultConfig()
		if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		if got := c.Workers.Cores(8); got != tt.want {
			t.Errorf("%v: %d of 8 cores, want %d", tt.env, got, tt.want)
		}
	}
}
