package injector

import (
	"strconv"
	"sync"
	"testing"

	"github.com/weftmesh/weft/internal/inject"
)

// TestLiveValuesNeverTorn: readers racing a writer always see one whole
// Values (here, two fields that every Store keeps equal).
func TestLiveValuesNeverTorn(t *testing.T) {
	mk := func(i int) inject.Values {
		v := inject.DefaultValues()
		v.IdentityTrustAnchorsPEM, v.Proxy.LogLevel = strconv.Itoa(i), strconv.Itoa(i)
		return v
	}
	live := NewLiveValues(mk(0))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if v := live.Load(); v.IdentityTrustAnchorsPEM != v.Proxy.LogLevel {
					t.Errorf("torn values: anchors %q, log level %q", v.IdentityTrustAnchorsPEM, v.Proxy.LogLevel)
					return
				}
			}
		}()
	}
	for i := 1; i <= 2000; i++ {
		live.Store(mk(i))
	}
	close(stop)
	wg.Wait()
	if got := live.Load().IdentityTrustAnchorsPEM; got != "2000" {
		t.Errorf("last stored %q, want 2000", got)
	}
}
