package injector

import (
	"sync/atomic"

	"github.com/weftmesh/weft/internal/inject"
)

// LiveValues holds the values the webhook injects with. Store replaces them
// whole and each review loads them once, so a pod never gets a mix of old
// and new values (say, new trust anchors with an old trust-root-sha256).
type LiveValues struct{ p atomic.Pointer[inject.Values] }

// NewLiveValues holds v.
func NewLiveValues(v inject.Values) *LiveValues {
	l := &LiveValues{}
	l.Store(v)
	return l
}

// Load returns the current values.
func (l *LiveValues) Load() inject.Values { return *l.p.Load() }

// Store makes v the current values for reviews that start after it.
func (l *LiveValues) Store(v inject.Values) { l.p.Store(&v) }
