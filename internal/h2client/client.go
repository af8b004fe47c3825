// Package h2client sends HTTP/2 requests (RFC 9113, prior knowledge) on
// connections the caller dials. It is the proxy's client for the HTTP/2
// it sends, to other proxies (over mTLS) and to applications (h2c), in
// place of net/http's: issue 17 measured Go's HTTP/2 client as the
// largest part of each proxy's CPU in an HTTP/2 pair that was not the
// proxy's own (a read loop and a write path that hand every response and
// request over between goroutines, a goroutine per request, a state hook
// called twice per request).
//
// A ClientConn's goroutine reads frames and delivers them to the streams;
// a request's HEADERS (and, when it has none, its end) are encoded and
// written by RoundTrip on its caller's goroutine, under the connection's
// write lock, in one write. Only a request with a body gets a goroutine,
// which sends it. A response body's reader returns flow-control credit
// itself. Cancellation of a request's context resets its stream
// (context.AfterFunc, no goroutine waiting on it). The client does what
// the proxy needs and no more: no server push (SETTINGS_ENABLE_PUSH 0),
// no compression, no waiting for 100 Continue (a body is sent at once,
// as net/http does without an ExpectContinueTimeout), informational
// responses are skipped.
package h2client

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/h2wire"
)

// DefaultMaxHeaderBytes bounds a response's header list
// (SETTINGS_MAX_HEADER_LIST_SIZE) when Config.MaxHeaderBytes is 0.
const DefaultMaxHeaderBytes = 1 << 20

// The receive windows the client grants. A stream's window bounds what
// one response body holds in memory when its reader is slower than the
// server; the connection's is large (as net/http's client's is), so that
// one slow reader does not stall the other streams of its connection.
const (
	streamRecvWindow = 1 << 20
	connRecvWindow   = 1 << 30
)

// The concurrent streams a connection takes before the server's SETTINGS
// say how many it allows, and when they do not say (net/http's values).
const (
	initialMaxStreams = 100
	defaultMaxStreams = 1000
)

// maxStreamID is the last stream ID a client may use.
const maxStreamID = 1<<31 - 1

// readBufSize is the connection's read buffer: frames are read with small
// reads (a header, then a payload).
const readBufSize = 16 << 10

// Config is a connection's settings. The zero value is usable.
type Config struct {
	// MaxHeaderBytes bounds a response's header list; a larger one fails
	// its request. 0: DefaultMaxHeaderBytes.
	MaxHeaderBytes uint32
	// PingAfter sends a PING when nothing was read for that long, and
	// PingTimeout closes the connection when nothing is read for that
	// long after it (a peer gone without a FIN). 0: no PINGs.
	PingAfter   time.Duration
	PingTimeout time.Duration
	// IdleTimeout closes a connection without requests for that long
	// (0: never). It is checked every PingAfter, or every IdleTimeout
	// without PINGs.
	IdleTimeout time.Duration
}

var (
	// ErrUnusable is what RoundTrip returns for a request the connection
	// did not take (closed, going away, or at its stream limit): nothing
	// of it was sent, its body was not read.
	ErrUnusable = errors.New("h2client: connection not usable")
	// ErrRefused is matched (errors.Is) by the error of a request the
	// server did not process: a REFUSED_STREAM reset, or a stream above
	// the last one a GOAWAY named. Some of its body may have been read.
	ErrRefused = errors.New("h2client: request not processed by the server")
	// ErrClosed is the error of the requests of a connection closed by
	// Close.
	ErrClosed = errors.New("h2client: connection closed")
)

// ResetError is the error of a request whose stream the server reset.
type ResetError struct{ Code http2.ErrCode }

func (e *ResetError) Error() string {
	return "h2client: stream reset by the server: " + e.Code.String()
}

// Is matches ErrRefused for REFUSED_STREAM.
func (e *ResetError) Is(target error) bool {
	return target == ErrRefused && e.Code == http2.ErrCodeRefusedStream
}

// goAwayError is the error of a request above the last stream a GOAWAY
// named.
type goAwayError struct {
	code http2.ErrCode
	last uint32
}

func (e *goAwayError) Error() string {
	return fmt.Sprintf("h2client: server sent GOAWAY (%v, last stream %d) before processing the request", e.code, e.last)
}

func (e *goAwayError) Is(target error) bool { return target == ErrRefused }

// ClientConn is one HTTP/2 connection to a server.
type ClientConn struct {
	nc     net.Conn
	cfg    Config
	fr     *http2.Framer        // reads; the read loop's only
	hr     *h2wire.HeaderReader // the read loop's only
	canon  h2wire.Canon         // the read loop's only
	frames atomic.Uint64        // frames read, for the health check

	// The write side: frames (and header blocks) are encoded through out
	// and written to nc in one Write per operation, under wmu.
	wmu   sync.Mutex
	out   *h2wire.Writer
	lower map[string]string // lower-case names not common (lowerName)

	// Streams, limits and flow control, under mu.
	mu          sync.Mutex
	cond        sync.Cond // send credit, resets, close
	streams     map[uint32]*stream
	lastID      uint32 // the highest stream ID opened
	reserved    int    // slots taken by Reserve, not yet by RoundTrip
	maxStreams  int    // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	gotSettings bool
	sendWindow  int64             // connection-level credit for our DATA
	initWindow  int64             // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    int               // the server's SETTINGS_MAX_FRAME_SIZE
	recv        h2wire.RecvWindow // the connection-level credit the server has
	goingAway   bool
	closed      bool
	err         error     // why the connection closed
	idleSince   time.Time // when the last stream ended
	seenFrames  uint64    // frames at the last health check
	pinged      bool      // a PING went out at the last health check
	health      *time.Timer
}

// New starts HTTP/2 on nc: it writes the client preface and settings,
// and starts the connection's read loop. The connection owns nc from
// then on.
func New(nc net.Conn, cfg Config) (*ClientConn, error) {
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	cc := &ClientConn{
		nc:         nc,
		cfg:        cfg,
		streams:    map[uint32]*stream{},
		maxStreams: initialMaxStreams,
		sendWindow: h2wire.InitialWindow,
		initWindow: h2wire.InitialWindow,
		maxFrame:   h2wire.DefaultFrameSize,
		recv:       h2wire.NewRecvWindow(connRecvWindow),
		idleSince:  time.Now(),
	}
	cc.cond.L = &cc.mu
	cc.fr = http2.NewFramer(nil, bufio.NewReaderSize(nc, readBufSize))
	cc.fr.SetMaxReadFrameSize(h2wire.DefaultFrameSize) // SETTINGS_MAX_FRAME_SIZE is not raised
	cc.hr = h2wire.NewHeaderReader(cfg.MaxHeaderBytes)
	cc.fr.SetReuseFrames()
	// The connection takes no more requests from a failed write on, not
	// once its read loop notices.
	cc.out = h2wire.NewWriter(nc, "h2client", cc.closeWith)
	err := cc.write(func() error {
		cc.out.WriteRaw(http2.ClientPreface)
		if err := cc.out.Framer.WriteSettings(
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamRecvWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderBytes},
		); err != nil {
			return err
		}
		return cc.out.Framer.WriteWindowUpdate(0, connRecvWindow-h2wire.InitialWindow)
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	if d := cc.checkEvery(); d > 0 {
		cc.mu.Lock()
		cc.health = time.AfterFunc(d, cc.healthCheck)
		cc.mu.Unlock()
	}
	go cc.readLoop()
	return cc, nil
}

// write runs encode, which adds frames through cc.out, and writes them
// in one Write. A failed write closes the connection; every later write
// returns its error.
func (cc *ClientConn) write(encode func() error) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	return cc.out.Write(encode)
}

func (cc *ClientConn) frameSize() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.maxFrame
}

// Reserve takes a slot for one request, which the next RoundTrip uses;
// ErrUnusable when the connection takes no more requests or has no slot.
// A reservation not used is given back with Release.
func (cc *ClientConn) Reserve() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !cc.usableLocked() || len(cc.streams)+cc.reserved >= cc.maxStreams {
		return ErrUnusable
	}
	cc.reserved++
	return nil
}

// Release gives back a slot Reserve took.
func (cc *ClientConn) Release() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.reserved > 0 {
		cc.reserved--
	}
}

// usableLocked reports whether the connection opens streams: open, not
// going away, stream IDs left. cc.mu is held.
func (cc *ClientConn) usableLocked() bool {
	return !cc.closed && !cc.goingAway && cc.lastID+2 <= maxStreamID
}

// Err is why the connection closed, or nil while it is open.
func (cc *ClientConn) Err() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err
}

// InFlight is the number of requests the connection carries or has
// reserved slots for.
func (cc *ClientConn) InFlight() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.streams) + cc.reserved
}

// Available is the number of requests the connection takes now: 0 once
// it is closed or going away.
func (cc *ClientConn) Available() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !cc.usableLocked() {
		return 0
	}
	return max(0, cc.maxStreams-len(cc.streams)-cc.reserved)
}

// Close closes the connection now; its requests fail with ErrClosed.
func (cc *ClientConn) Close() error {
	cc.closeWith(ErrClosed)
	return nil
}

// closeWith closes the connection, failing its streams with err; the
// first error stays. It takes cc.mu (cc.wmu may be held).
func (cc *ClientConn) closeWith(err error) {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	cc.err = err
	if cc.health != nil {
		cc.health.Stop()
	}
	streams := make([]*stream, 0, len(cc.streams))
	for _, st := range cc.streams {
		streams = append(streams, st)
		st.sentEnd, st.recvEnd, st.reset = true, true, true
	}
	clear(cc.streams)
	cc.reserved = 0
	cc.cond.Broadcast()
	cc.mu.Unlock()
	for _, st := range streams {
		st.fail(err)
		st.ended()
	}
	cc.nc.Close()
}

// goAway sends GOAWAY with code and closes the connection (a connection
// error of the server's).
func (cc *ClientConn) goAway(code http2.ErrCode, err error) {
	// The last stream the server opened: none (no server push).
	cc.write(func() error { return cc.out.Framer.WriteGoAway(0, code, nil) })
	cc.closeWith(err)
}

// checkEvery is the health check's period: PingAfter, or IdleTimeout
// without PINGs.
func (cc *ClientConn) checkEvery() time.Duration {
	if cc.cfg.PingAfter > 0 {
		if cc.cfg.IdleTimeout > 0 {
			return min(cc.cfg.PingAfter, cc.cfg.IdleTimeout)
		}
		return cc.cfg.PingAfter
	}
	return cc.cfg.IdleTimeout
}

// pingTimeout is how long the connection waits for a frame after a PING.
func (cc *ClientConn) pingTimeout() time.Duration {
	if cc.cfg.PingTimeout > 0 {
		return cc.cfg.PingTimeout
	}
	return 15 * time.Second
}

// healthCheck runs every checkEvery: it closes an idle connection after
// IdleTimeout, sends a PING when nothing was read since the last check,
// and closes the connection when nothing was read since that PING.
func (cc *ClientConn) healthCheck() {
	frames := cc.frames.Load()
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	idle := len(cc.streams) == 0 && cc.reserved == 0
	if idle && cc.cfg.IdleTimeout > 0 && time.Since(cc.idleSince) >= cc.cfg.IdleTimeout {
		cc.mu.Unlock()
		cc.closeWith(errors.New("h2client: connection idle"))
		return
	}
	next := cc.checkEvery()
	var ping, dead bool
	if cc.cfg.PingAfter > 0 {
		switch {
		case frames != cc.seenFrames:
			cc.pinged = false
		case cc.pinged:
			dead = true
		default:
			ping = true
			cc.pinged = true
			next = cc.pingTimeout()
		}
	}
	cc.seenFrames = frames
	if !dead {
		cc.health.Reset(next)
	}
	cc.mu.Unlock()
	if dead {
		cc.closeWith(errors.New("h2client: no answer to PING: connection lost"))
		return
	}
	if ping {
		cc.write(func() error { return cc.out.Framer.WritePing(false, [8]byte{'w', 'e', 'f', 't'}) })
	}
}
