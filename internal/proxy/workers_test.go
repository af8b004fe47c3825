package proxy

import "testing"

func TestWorkersCores(t *testing.T) {
	for _, tt := range []struct {
		name      string
		w         Workers
		available int
		want      int
	}{
		{"unset: one core, as Linkerd's proxy", Workers{}, 8, 1},
		{"min", Workers{Min: 2}, 8, 2},
		{"min above available", Workers{Min: 4}, 2, 2},
		{"max", Workers{Max: 3}, 8, 3},
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
// LINKERD2_PROXY_CORES, whichever way round they are listed.
func TestCoresMinWinsOverCores(t *testing.T) {
	for _, env := range []map[string]string{
		{"LINKERD2_PROXY_CORES": "4", "LINKERD2_PROXY_CORES_MIN": "2"},
		{"LINKERD2_PROXY_CORES_MIN": "2", "LINKERD2_PROXY_CORES": "4"},
	} {
		c := DefaultConfig()
		if err := c.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		if c.Workers.Min != 2 {
			t.Errorf("%v: min %d, want 2", env, c.Workers.Min)
		}
	}
	c := DefaultConfig()
	if err := c.ApplyEnv(func(k string) (string, bool) {
		return "3", k == "LINKERD2_PROXY_CORES"
	}); err != nil || c.Workers.Min != 3 {
		t.Errorf("LINKERD2_PROXY_CORES=3 alone: min %d (%v), want 3", c.Workers.Min, err)
	}
}
