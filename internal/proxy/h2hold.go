package proxy

import (
	"io"
	"sync"
	"time"
)

// Go's HTTP/2 server writes a response's HEADERS frame and flushes it on its
// own (the handler waits for that write before its DATA is queued), then
// writes and flushes the DATA: two writes (two syscalls, and two TLS records
// between proxies) per response on every hop. The proxy's handlers always
// follow a response's headers with its data at once (respond writes the
// header when the first chunk of the body is there), so h2WriteHold keeps a
// server connection's write that ends with a HEADERS frame opening a
// response body and sends it with the next write: HEADERS and DATA in one
// write. If no write follows within h2HoldDelay (a body that is slow to
// start, a 100 Continue), the held bytes are written then.
//
// The connection's batching (h2batch.go, below the hold) gathers frames
// too, but only those of goroutines already runnable when its flush runs:
// the handler waiting for its HEADERS write is often not, and the frame
// then goes out alone. Without the hold the h2 mTLS pair's p99 at 1,000
// rps rose 0.4–1.4 ms, in 3 runs of 3 (issue 17).

// The hold serves net/http's HTTP/2 server only (Config.NetHTTP2Server):
// the proxy's own (internal/h2server) sends a response's HEADERS with its
// first DATA itself.

// h2HoldDelay bounds how long a response's HEADERS frame waits for its data.
const h2HoldDelay = time.Millisecond

// h2HoldMax is the most held bytes and the next write may add up to: a
// larger next write goes out after the held bytes, in a write of its own,
// so that a connection keeps no buffer larger than this.
const h2HoldMax = 4 << 10

// h2 frame header fields (RFC 9113 §4.1) the hold looks at.
const (
	h2FrameHeaderLen   = 9
	h2FrameTypeHeaders = 0x1
	h2FlagEndStream    = 0x1
)

// h2WriteHold sits between an HTTP/2 server connection's framer and its
// socket. It follows the frame boundaries of everything written (frames may
// be split across writes) so that it only holds a write ending exactly at
// the end of a HEADERS frame without END_STREAM.
type h2WriteHold struct {
	w     io.Writer
	delay time.Duration // h2HoldDelay (tests: longer)
	mu    sync.Mutex
	held  []byte
	timer *time.Timer
	err   error // a failed write of held bytes, returned by the next write

	// Frame-boundary tracking over the bytes written so far.
	skip int                    // payload bytes of the current frame still to come
	hdr  [h2FrameHeaderLen]byte // a frame header being written
	nhdr int                    // bytes of hdr written so far
	// The type and flags of the last frame whose header was written.
	typ, flags byte
}

func newH2WriteHold(w io.Writer) *h2WriteHold { return &h2WriteHold{w: w, delay: h2HoldDelay} }

// scan advances the frame-boundary state over b and reports whether b ends
// at a frame boundary with a HEADERS frame that does not end its stream.
func (h *h2WriteHold) scan(b []byte) bool {
	b0 := b
	for len(b) > 0 {
		if h.skip > 0 {
			n := min(h.skip, len(b))
			h.skip -= n
			b = b[n:]
			continue
		}
		n := copy(h.hdr[h.nhdr:], b)
		h.nhdr += n
		b = b[n:]
		if h.nhdr < h2FrameHeaderLen {
			break
		}
		h.nhdr = 0
		h.skip = int(h.hdr[0])<<16 | int(h.hdr[1])<<8 | int(h.hdr[2])
		h.typ, h.flags = h.hdr[3], h.hdr[4]
	}
	return len(b0) > 0 && h.skip == 0 && h.nhdr == 0 && h.typ == h2FrameTypeHeaders && h.flags&h2FlagEndStream == 0
}

// Write sends b, with any held bytes before it, or holds b if it ends with
// a response's opening HEADERS frame.
func (h *h2WriteHold) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return 0, h.err
	}
	if h.scan(b) && len(h.held)+len(b) <= h2HoldMax {
		// The timer starts with the first held bytes and is not pushed
		// back by more: nothing waits longer than h2HoldDelay.
		if len(h.held) == 0 {
			if h.timer == nil {
				h.timer = time.AfterFunc(h.delay, h.flushHeld)
			} else {
				h.timer.Reset(h.delay)
			}
		}
		h.held = append(h.held, b...)
		return len(b), nil
	}
	if len(h.held) == 0 {
		return h.w.Write(b)
	}
	h.timer.Stop()
	if len(h.held)+len(b) > h2HoldMax {
		if err := h.writeHeldLocked(); err != nil {
			return 0, err
		}
		return h.w.Write(b)
	}
	h.held = append(h.held, b...)
	err := h.writeHeldLocked()
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func (h *h2WriteHold) flushHeld() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.writeHeldLocked(); err != nil && h.err == nil {
		h.err = err
	}
}

func (h *h2WriteHold) writeHeldLocked() error {
	if len(h.held) == 0 {
		return nil
	}
	_, err := h.w.Write(h.held)
	h.held = h.held[:0]
	return err
}
