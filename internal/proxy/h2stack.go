package proxy

import "net/http"

// Go's HTTP/2 server runs every request's handler on a goroutine of its
// own, started with a small stack (the runtime's average over all
// goroutines). The proxy's handler path is deeper than that, so the stack
// grew on every request, deep in the path, where the runtime has many
// frames to walk and adjust as it copies them (runtime.newstack: 8–10 % of
// each proxy's CPU in the bench's h2 mTLS pair, issue 17). The handler now
// grows its stack on entry, with a few frames on it, to h2HandlerStack at
// once: one cheaper growth instead of one or two deep ones.

// h2HandlerStack is the stack a request's handler grows to on entry: what
// an outbound request's path reached in profiles of the bench's h2 pair.
// An inbound request's path sometimes goes beyond (the response's headers
// written from the handler), and its stack grows once more then; growing
// every inbound handler to the next size, 16 KiB, cost as much as it saved.
const h2HandlerStack = 8 << 10

// stackIndex is always 0; growStack reads its frame through it so that the
// compiler keeps the frame.
var stackIndex int

// growStack has a frame of half h2HandlerStack: with the frames of
// net/http's handler entry and the runtime's stack guard below it, the
// runtime grows a smaller stack straight to h2HandlerStack (it doubles the
// stack until the frame fits).
//
//go:noinline
func growStack() byte {
	var frame [h2HandlerStack / 2]byte
	return frame[stackIndex%len(frame)]
}

// grownStack wraps a direction's handler so that each HTTP/2 request grows
// its goroutine's stack on entry. HTTP/1 requests are served on their
// connection's goroutine, whose stack stays grown, and are left alone.
func grownStack(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			growStack()
		}
		h.ServeHTTP(w, r)
	})
}
