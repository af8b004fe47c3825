// Package h2server serves HTTP/2 connections (RFC 9113, prior knowledge:
// the connection's first bytes are the client preface) to an http.Handler.
// It is the proxy's server for the HTTP/2 connections it accepts, from
// applications (h2c) and from other proxies (over mTLS), in place of
// net/http's: issue 17 measured Go's HTTP/2 server at a third of each
// proxy's CPU in an HTTP/2 pair (a serve loop every frame passes through,
// a goroutine per flush, channel handoffs between the handlers and the
// loop, a header clone per response).
//
// Here the connection's goroutine reads frames and hands each request to
// a goroutine of its own, as net/http does, but every other step runs on
// the goroutine that needs it: a handler encodes and writes its own frames
// under the connection's write lock (a response's HEADERS, DATA and
// trailers leave in one write), and a handler reading its request body
// returns flow-control credit itself. The server does what the proxy needs
// of net/http's and no more: no Content-Type sniffing and no Date header
// (the proxy passes a response through as it is), no server push, no
// extended CONNECT, no read or write deadlines per request.
package h2server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/h2wire"
)

// Defaults of Server's limits.
const (
	DefaultMaxConcurrentStreams = 250
	DefaultMaxHeaderBytes       = 1 << 20
)

// The receive windows the server grants: per stream (SETTINGS_INITIAL_WINDOW_SIZE)
// and per connection, which bounds what a connection's request bodies may
// hold in memory at once (net/http's defaults for both).
const (
	streamRecvWindow = 1 << 20
	connRecvWindow   = 1 << 20
)

// Server serves HTTP/2 connections. The zero value is not usable: Handler
// is required.
type Server struct {
	Handler http.Handler
	// MaxConcurrentStreams bounds the requests a connection runs at once
	// (SETTINGS_MAX_CONCURRENT_STREAMS); streams beyond it are refused.
	// 0: DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes bounds a request's header list
	// (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one gets 431. 0:
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// IdleTimeout closes a connection without requests for that long (0:
	// never).
	IdleTimeout time.Duration
	// Log receives handler panics and protocol errors (nil: discarded).
	Log *slog.Logger

	mu      sync.Mutex
	closing bool
	conns   map[*conn]struct{}
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams == 0 {
		return DefaultMaxConcurrentStreams
	}
	return s.MaxConcurrentStreams
}

func (s *Server) maxHeaderBytes() uint32 {
	if s.MaxHeaderBytes <= 0 {
		return DefaultMaxHeaderBytes
	}
	return uint32(s.MaxHeaderBytes)
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// ServeConn serves nc until it closes, then closes it and waits for the
// connection's handlers to return. ctx is the parent of every request's
// context (its values are the requests'; cancelling it does not end the
// connection). nc's reads should be buffered: frames are read with small
// reads.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	c := newConn(s, ctx, nc)
	if !s.add(c) {
		nc.Close()
		return
	}
	defer s.remove(c)
	c.serve()
}

func (s *Server) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops the server gracefully: every connection gets a GOAWAY,
// finishes the requests it has and closes; new connections are closed at
// once. It does not wait: ServeConn returns when its connection is done.
func (s *Server) Shutdown() {
	for _, c := range s.stop() {
		c.goAway(http2.ErrCodeNo, false)
	}
}

// Close closes every connection now.
func (s *Server) Close() {
	for _, c := range s.stop() {
		c.nc.Close()
	}
}

// stop refuses new connections and returns the served ones.
func (s *Server) stop() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// errConnClosed ends the streams of a connection that closed.
var errConnClosed = errors.New("h2server: connection closed")

// errStreamReset is what a handler's body reads and writes return once its
// stream was reset.
var errStreamReset = errors.New("h2server: stream reset")

// conn is one served connection.
type conn struct {
	srv    *Server
	nc     net.Conn
	ctx    context.Context
	remote string
	fr     *http2.Framer        // reads; used by the serving goroutine only
	hr     *h2wire.HeaderReader // the serving goroutine's
	canon  h2wire.Canon         // the serving goroutine's
	wg     sync.WaitGroup       // running handlers

	// The write side: frames (and header blocks) are encoded through out
	// and written to nc in one Write per operation, under wmu.
	wmu sync.Mutex
	out *h2wire.Writer

	// Streams and flow control, under mu.
	mu         sync.Mutex
	cond       sync.Cond // window credit, resets, close
	streams    map[uint32]*stream
	maxID      uint32 // highest stream ID the client used
	goAwayID   uint32 // streams above it are ignored once goingAway
	goingAway  bool
	closed     bool
	running    int               // handlers running
	sendWindow int64             // connection-level credit for our DATA
	initWindow int64             // the client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame   int               // the client's SETTINGS_MAX_FRAME_SIZE
	recv       h2wire.RecvWindow // the connection-level credit the client has
	idle       *time.Timer
}

func newConn(s *Server, ctx context.Context, nc net.Conn) *conn {
	c := &conn{
		srv:        s,
		nc:         nc,
		ctx:        ctx,
		remote:     nc.RemoteAddr().String(),
		streams:    map[uint32]*stream{},
		sendWindow: h2wire.InitialWindow,
		initWindow: h2wire.InitialWindow,
		maxFrame:   h2wire.DefaultFrameSize,
		recv:       h2wire.NewRecvWindow(connRecvWindow),
	}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(nil, nc)
	c.fr.SetMaxReadFrameSize(h2wire.DefaultFrameSize) // SETTINGS_MAX_FRAME_SIZE is not raised
	c.hr = h2wire.NewHeaderReader(s.maxHeaderBytes())
	c.fr.SetReuseFrames()
	c.out = h2wire.NewWriter(nc, "h2server", func(error) { nc.Close() })
	return c
}

// serve runs the connection: preface, settings, then frames until the
// connection fails or closes.
func (c *conn) serve() {
	err := c.readPreface()
	if err == nil {
		err = c.write(func() error {
			if err := c.out.Framer.WriteSettings(
				http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.srv.maxStreams()},
				http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamRecvWindow},
				http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.srv.maxHeaderBytes()},
			); err != nil {
				return err
			}
			return c.out.Framer.WriteWindowUpdate(0, connRecvWindow-h2wire.InitialWindow)
		})
	}
	if err == nil {
		c.armIdle()
		err = c.readFrames()
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.srv.log().Debug("HTTP/2 connection error", "peer", c.remote, "err", err)
		c.goAway(http2.ErrCode(ce), true)
	}
	c.close()
	c.wg.Wait()
}

// prefaceTimeout bounds the wait for the client preface (net/http's
// HTTP/2 server waits as long).
const prefaceTimeout = 10 * time.Second

func (c *conn) readPreface() error {
	var buf [len(http2.ClientPreface)]byte
	c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	_, err := io.ReadFull(c.nc, buf[:])
	c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	if string(buf[:]) != http2.ClientPreface {
		return errors.New("h2server: bad client preface")
	}
	return nil
}

// close ends the connection: every stream is reset, the socket closed.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.idle != nil {
		c.idle.Stop()
	}
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	clear(c.streams)
	c.cond.Broadcast()
	c.mu.Unlock()
	for _, st := range streams {
		st.fail(errConnClosed)
	}
	c.nc.Close()
}

// write runs encode, which adds frames through c.out, and writes them in
// one Write. A failed write closes the connection; every later write
// returns its error.
func (c *conn) write(encode func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.out.Write(encode)
}

// writeHeaderBlock writes the block in c.out.Block as HEADERS (and
// CONTINUATION) frames of stream id. c.wmu is held.
func (c *conn) writeHeaderBlock(id uint32, endStream bool) error {
	return c.out.WriteBlock(id, endStream, c.frameSize())
}

// goAway sends GOAWAY with code: the streams the client opened so far
// finish, later ones are ignored, and the connection closes once no
// stream is left (at once when now).
func (c *conn) goAway(code http2.ErrCode, now bool) {
	c.mu.Lock()
	if c.closed || (c.goingAway && !now) {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	c.goAwayID = c.maxID
	last := c.goAwayID
	done := c.running == 0 && len(c.streams) == 0
	c.mu.Unlock()
	c.write(func() error { return c.out.Framer.WriteGoAway(last, code, nil) })
	if now || done {
		c.nc.Close()
	}
}

// armIdle starts the idle timer when the connection has no request (c.mu
// held, or before serving).
func (c *conn) armIdle() {
	if c.srv.IdleTimeout <= 0 {
		return
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(c.srv.IdleTimeout, c.idleFired)
		return
	}
	c.idle.Reset(c.srv.IdleTimeout)
}

func (c *conn) idleFired() {
	c.mu.Lock()
	busy := c.running > 0 || len(c.streams) > 0
	c.mu.Unlock()
	if !busy {
		c.goAway(http2.ErrCodeNo, true)
	}
}

// readFrame reads and processes one frame.
func (c *conn) readFrame() error {
	f, err := c.fr.ReadFrame()
	if err != nil {
		return err
	}
	return c.processFrame(f)
}

// readFrames is the connection's read loop: it returns the error that
// ends the connection; a stream error refuses only its stream.
func (c *conn) readFrames() error {
	for {
		err := c.readFrame()
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			// A malformed request (its header block was decoded, the
			// connection's state is intact): refuse that stream.
			c.mu.Lock()
			if se.StreamID > c.maxID && se.StreamID%2 == 1 {
				c.maxID = se.StreamID
			}
			st := c.streams[se.StreamID]
			c.mu.Unlock()
			if st != nil {
				c.resetStream(st, se.Code, errStreamReset)
			} else {
				c.writeReset(se.StreamID, se.Code)
			}
			continue
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			return http2.ConnectionError(http2.ErrCodeFrameSize)
		}
		return err
	}
}

func (c *conn) processFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		b, err := c.hr.Read(c.fr, f)
		if err != nil {
			return err // a stream error refuses the stream (readFrames)
		}
		return c.processHeaders(b)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		data := f.Data
		c.write(func() error { return c.out.Framer.WritePing(true, data) })
		return nil
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		if f.StreamID > c.maxID {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeProtocol) // an idle stream
		}
		st := c.streams[f.StreamID]
		c.mu.Unlock()
		if st != nil {
			c.streamReset(st, errStreamReset)
		}
		return nil
	case *http2.GoAwayFrame:
		return nil // the client opens no more streams; it closes when done
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // a client must not push
	default:
		return nil // PRIORITY, PRIORITY_UPDATE, unknown types
	}
}

func (c *conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.initWindow
			c.initWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > h2wire.MaxWindow {
					c.mu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.maxFrame = int(s.Val)
			c.mu.Unlock()
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.out.Enc.SetMaxDynamicTableSizeLimit(s.Val)
			c.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.write(func() error { return c.out.Framer.WriteSettingsAck() })
	return nil
}

func (c *conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > h2wire.MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.cond.Broadcast()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.sendWindow += int64(f.Increment)
	if st.sendWindow > h2wire.MaxWindow {
		go c.resetStream(st, http2.ErrCodeFlowControl, errStreamReset)
		return nil
	}
	c.cond.Broadcast()
	return nil
}

// processHeaders starts a request, or ends a request body with trailers.
func (c *conn) processHeaders(f *h2wire.HeaderBlock) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.mu.Unlock()
		return c.processTrailers(st, f)
	}
	if id <= c.maxID {
		// A stream that ended (or that this server reset): the block was
		// decoded, which keeps the connection's header table in step.
		c.mu.Unlock()
		return nil
	}
	c.maxID = id
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return nil
	}
	if c.running >= int(c.srv.maxStreams()) {
		c.mu.Unlock()
		c.writeReset(id, http2.ErrCodeRefusedStream)
		return nil
	}
	c.mu.Unlock()

	if f.Truncated {
		// The header list is over the limit the client was told: 431,
		// as net/http answers.
		c.write(func() error {
			c.out.Block.Reset()
			c.out.Enc.WriteField(hpack.HeaderField{Name: ":status", Value: "431"})
			return c.writeHeaderBlock(id, true)
		})
		if !f.EndStream {
			c.writeReset(id, http2.ErrCodeNo)
		}
		return nil
	}
	st, code := c.newStream(f)
	if st == nil {
		c.writeReset(id, code)
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		st.cancel()
		return nil
	}
	c.streams[id] = st
	c.running++
	if c.idle != nil {
		c.idle.Stop()
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go c.runHandler(st)
	return nil
}

// writeReset sends RST_STREAM for a stream the connection does not track.
func (c *conn) writeReset(id uint32, code http2.ErrCode) {
	c.write(func() error { return c.out.Framer.WriteRSTStream(id, code) })
}

// resetStream resets st with code and ends it with err.
func (c *conn) resetStream(st *stream, code http2.ErrCode, err error) {
	c.write(func() error {
		if st.wroteReset {
			return nil
		}
		st.wroteReset = true
		return c.out.Framer.WriteRSTStream(st.id, code)
	})
	c.streamReset(st, err)
}

// streamReset ends st, reset by either side: its body fails, its writes
// fail, its context ends, and the connection forgets it.
func (c *conn) streamReset(st *stream, err error) {
	c.mu.Lock()
	st.reset = true
	st.remoteDone = true
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	st.fail(err)
	c.maybeDone()
}

// maybeDone closes a connection going away once its last stream is done,
// and arms the idle timer of one that has none left.
func (c *conn) maybeDone() {
	c.mu.Lock()
	empty := c.running == 0 && len(c.streams) == 0
	goingAway := c.goingAway
	if empty && !goingAway && !c.closed {
		c.armIdle()
	}
	c.mu.Unlock()
	if empty && goingAway {
		c.nc.Close()
	}
}

// runHandler runs the handler of st on its own goroutine.
func (c *conn) runHandler(st *stream) {
	defer c.wg.Done()
	defer c.handlerDone(st)
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.srv.log().Error("panic serving HTTP/2 request", "peer", c.remote, "panic", v)
			}
			c.resetStream(st, http2.ErrCodeInternal, errStreamReset)
		}
	}()
	c.srv.Handler.ServeHTTP(&st.w, &st.req)
	st.w.finish()
}

// handlerDone: the handler returned. A request body the client is still
// sending is not wanted any more: RST_STREAM(NO_ERROR) after the
// response, as RFC 9113 §8.1 allows.
func (c *conn) handlerDone(st *stream) {
	st.cancel()
	st.body.closeRead()
	c.mu.Lock()
	c.running--
	open := !st.remoteDone
	if open {
		st.remoteDone = true
	}
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	c.mu.Unlock()
	if open {
		c.write(func() error {
			if st.wroteReset {
				return nil
			}
			st.wroteReset = true
			return c.out.Framer.WriteRSTStream(st.id, http2.ErrCodeNo)
		})
	}
	st.w.release()
	c.maybeDone()
}
