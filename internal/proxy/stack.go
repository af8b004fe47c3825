package proxy

// Go's HTTP/2 server runs each request's handler on a new goroutine, whose
// stack starts small (a few KiB) and is grown by copying, doubling each
// time, as the handler calls deeper: the proxy's path to the upstream and
// back (policy, balancing, the HTTP/2 client) grew it two or three times
// per request, 6–10 % of a proxy's CPU at max rate in the h2 rows of
// bench/ (newstack/copystack, each copy walking the frames to adjust
// them). reserveStack grows it once, while it is still shallow: the
// runtime sizes a growth to the frame that needs it, so one call with a
// large frame takes the stack to its final size in one cheap copy.

// stackReserve is the frame reserveStack needs: a stack of 16 KiB after
// the growth (the smallest power of two above it with the frames below),
// enough for the proxy's HTTP/2 handler path.
const stackReserve = 8 << 10

// reserveStack grows the calling goroutine's stack to hold stackReserve
// more bytes. i only keeps the compiler from proving the frame unused.
//
//go:noinline
func reserveStack(i uint) byte {
	var b [stackReserve]byte
	b[i%stackReserve] = byte(i)
	return b[(i+1)%stackReserve]
}
