package proxy

import (
	"context"
	"sync/atomic"
)

// A request forwarded on a pooled HTTP/1 connection (h1Client) must stop
// when its context ends: the client went away, or a timeout passed. With
// context.AfterFunc that is a registration per request, two allocations
// on each proxy (a fifth of what the pair allocated per request,
// BenchmarkH1Pair). A served HTTP/1 connection runs one request at a time
// and its context ends only when it does, so it watches instead with one
// slot: the request's upstream connection is put there while the request
// is in flight, and ending the served connection's context interrupts
// whatever is in the slot. A context with a shorter life of its own (a
// route timeout, an HTTP/2 stream) still gets AfterFunc.

// srvCtx is a served HTTP/1 connection's context.
type srvCtx struct {
	context.Context // cancelled by cancel, and by nothing else
	cancelCtx       context.CancelFunc
	done            <-chan struct{}
	inFlight        atomic.Pointer[h1Conn] // the upstream connection of the request in flight
}

type srvCtxKey struct{}

// newSrvCtx derives a served connection's context from parent, which is
// never cancelled.
func newSrvCtx(parent context.Context) *srvCtx {
	ctx, cancel := context.WithCancel(parent)
	return &srvCtx{Context: ctx, cancelCtx: cancel, done: ctx.Done()}
}

func (c *srvCtx) Value(key any) any {
	if _, ok := key.(srvCtxKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// cancel ends the context and interrupts the request in flight, if any.
func (c *srvCtx) cancel() {
	c.cancelCtx()
	if pc := c.inFlight.Swap(nil); pc != nil {
		pc.interrupt()
	}
}

// requestWatch interrupts a request's upstream connection when the
// request's context ends, until stop.
type requestWatch struct {
	srv   *srvCtx // the served connection's slot holds pc
	pc    *h1Conn
	after func() bool // or AfterFunc's stop
}

// watchRequest starts interrupting pc when ctx ends: through the served
// connection's slot when ctx ends exactly with that connection and the
// slot is free, with context.AfterFunc otherwise.
func watchRequest(ctx context.Context, pc *h1Conn) requestWatch {
	if s, _ := ctx.Value(srvCtxKey{}).(*srvCtx); s != nil && ctx.Done() == s.done && s.inFlight.CompareAndSwap(nil, pc) {
		// Ended before pc was in the slot: interrupted now, as AfterFunc
		// would (unless cancel took it from the slot first).
		if ctx.Err() != nil && s.inFlight.CompareAndSwap(pc, nil) {
			pc.interrupt()
		}
		return requestWatch{srv: s, pc: pc}
	}
	return requestWatch{after: context.AfterFunc(ctx, pc.interrupt)}
}

// stop ends the watch. Like AfterFunc's stop, it reports whether it
// stopped the watch before the context ended it (false: the connection
// was, or is being, interrupted).
// A second stop reports false.
func (w *requestWatch) stop() bool {
	switch {
	case w.srv != nil:
		s := w.srv
		w.srv = nil
		return s.inFlight.CompareAndSwap(w.pc, nil)
	case w.after != nil:
		return w.after()
	}
	return false
}
