package httproute

import (
	"sync"

	"github.com/weftmesh/weft/internal/route"
)

// Cache holds the compiled form of recently seen tables, keyed by table
// pointer (a route.Table is immutable once published; a new version is a
// new pointer). Reads are lock-free. Safe for concurrent use.
type Cache struct {
	m  sync.Map // *route.Table → cached
	mu sync.Mutex
	n  int
}

type cached struct {
	t   *Table
	err error
}

// maxCached bounds the cache; past it the cache starts over (tables in
// use are compiled again once).
const maxCached = 1024

// Compile returns the compiled t, compiling it on first use.
func (c *Cache) Compile(t *route.Table) (*Table, error) {
	if e, ok := c.m.Load(t); ok {
		return e.(cached).t, e.(cached).err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m.Load(t); ok {
		return e.(cached).t, e.(cached).err
	}
	if c.n >= maxCached {
		c.m.Clear()
		c.n = 0
	}
	ct, err := Compile(t)
	c.m.Store(t, cached{ct, err})
	c.n++
	return ct, err
}
