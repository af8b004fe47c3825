package h2server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weftmesh/weft/internal/h2wire"
)

// rawClient speaks HTTP/2 frame by frame to a server connection.
type rawClient struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	// writes counts the server's Write calls on its side of the pipe.
	writes *countingConn
}

// countingConn counts the Write calls made on it.
type countingConn struct {
	net.Conn
	writes chan int
}

func (c *countingConn) Write(p []byte) (int, error) {
	select {
	case c.writes <- len(p):
	default:
	}
	return c.Conn.Write(p)
}

// dialRaw serves one connection of s over a TCP pair and returns its
// client side after the preface and the SETTINGS exchange.
func dialRaw(t *testing.T, s *Server) *rawClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: server, writes: make(chan int, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(context.Background(), cc)
	}()
	t.Cleanup(func() {
		client.Close()
		<-done
	})
	client.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawClient{t: t, nc: client, fr: http2.NewFramer(client, client), writes: cc}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	io.WriteString(client, http2.ClientPreface)
	c.fr.WriteSettings()
	// The server's SETTINGS and WINDOW_UPDATE, then the ack of ours.
	for sawSettings, sawAck := false, false; !sawSettings || !sawAck; {
		f := c.read()
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if sf.IsAck() {
				sawAck = true
			} else {
				sawSettings = true
				c.fr.WriteSettingsAck()
			}
		}
	}
	return c
}

func (c *rawClient) read() http2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// headers sends a request's HEADERS with the given fields after the
// pseudo-header fields of GET http://web.test/.
func (c *rawClient) headers(id uint32, end bool, fields ...string) {
	c.hbuf.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "web.test"}, {":path", "/"}} {
		c.henc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(fields); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

// until reads frames until one satisfies ok, skipping the others.
func (c *rawClient) until(what string, ok func(http2.Frame) bool) http2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok(f) {
			return f
		}
	}
}

func rstOf(id uint32) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })

// A small response leaves in one write: HEADERS, then DATA with
// END_STREAM.
func TestSmallResponseIsOneWrite(t *testing.T) {
	c := dialRaw(t, &Server{Handler: okHandler})
	for len(c.writes.writes) > 0 {
		<-c.writes.writes
	}
	c.headers(1, true)
	h := c.until("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
	if h.PseudoValue("status") != "200" || h.StreamEnded() {
		t.Fatalf("HEADERS: status %q, END_STREAM %v", h.PseudoValue("status"), h.StreamEnded())
	}
	d, ok := c.read().(*http2.DataFrame)
	if !ok || string(d.Data()) != "ok" || !d.StreamEnded() {
		t.Fatalf("after HEADERS: %v", d)
	}
	if n := len(c.writes.writes); n != 1 {
		t.Errorf("the response took %d writes, want 1", n)
	}
}

// Malformed requests get RST_STREAM(PROTOCOL_ERROR) and the connection
// goes on serving.
func TestMalformedRequestsAreReset(t *testing.T) {
	c := dialRaw(t, &Server{Handler: okHandler})
	for i, fields := range [][]string{
		{"connection", "keep-alive"},
		{"te", "gzip"},
		{"upgrade", "websocket"},
		{"content-length", "x"},
	} {
		id := uint32(1 + 2*i)
		c.headers(id, false, fields...)
		r := c.until("RST_STREAM", rstOf(id)).(*http2.RSTStreamFrame)
		if r.ErrCode != http2.ErrCodeProtocol {
			t.Errorf("%v: RST_STREAM %v, want PROTOCOL_ERROR", fields, r.ErrCode)
		}
	}
	c.headers(99, true)
	c.until("a response on the same connection", func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == 99 && h.PseudoValue("status") == "200"
	})
}

// Streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused.
func TestStreamsOverTheLimitAreRefused(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := dialRaw(t, &Server{MaxConcurrentStreams: 2, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	})})
	c.headers(1, true)
	c.headers(3, true)
	c.headers(5, true)
	r := c.until("RST_STREAM", rstOf(5)).(*http2.RSTStreamFrame)
	if r.ErrCode != http2.ErrCodeRefusedStream {
		t.Errorf("third stream: %v, want REFUSED_STREAM", r.ErrCode)
	}
}

func TestPingIsAnswered(t *testing.T) {
	c := dialRaw(t, &Server{Handler: okHandler})
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	c.fr.WritePing(false, data)
	p := c.until("PING ack", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }).(*http2.PingFrame)
	if p.Data != data {
		t.Errorf("PING ack data %v, want %v", p.Data, data)
	}
}

// Flow-control violations end the connection: DATA beyond the window the
// client was granted, a window raised past 2^31-1.
func TestFlowControlErrors(t *testing.T) {
	waiting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	goAway := func(c *rawClient) http2.ErrCode {
		return c.until("GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame).ErrCode
	}
	c := dialRaw(t, &Server{Handler: waiting})
	c.headers(1, false)
	chunk := make([]byte, 16384)
	for sent := 0; sent <= connRecvWindow; sent += len(chunk) {
		c.fr.WriteData(1, false, chunk)
	}
	if code := goAway(c); code != http2.ErrCodeFlowControl {
		t.Errorf("DATA over the window: GOAWAY %v, want FLOW_CONTROL_ERROR", code)
	}
	c = dialRaw(t, &Server{Handler: waiting})
	c.fr.WriteWindowUpdate(0, h2wire.MaxWindow)
	if code := goAway(c); code != http2.ErrCodeFlowControl {
		t.Errorf("window overflow: GOAWAY %v, want FLOW_CONTROL_ERROR", code)
	}
}

// A response larger than the client's window waits for WINDOW_UPDATE and
// sends no more than the window allows.
func TestResponseWaitsForTheClientsWindow(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 100000)
	c := dialRaw(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(big) })})
	c.headers(1, true)
	got := 0
	for got < h2wire.InitialWindow {
		if d, ok := c.read().(*http2.DataFrame); ok {
			got += len(d.Data())
		}
	}
	if got != h2wire.InitialWindow {
		t.Fatalf("%d bytes before any WINDOW_UPDATE, want the window, %d", got, h2wire.InitialWindow)
	}
	c.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if f, err := c.fr.ReadFrame(); err == nil {
		t.Fatalf("a frame beyond the window: %v", f)
	}
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.fr.WriteWindowUpdate(0, 1<<20)
	c.fr.WriteWindowUpdate(1, 1<<20)
	for {
		d, ok := c.read().(*http2.DataFrame)
		if !ok {
			continue
		}
		got += len(d.Data())
		if d.StreamEnded() {
			break
		}
	}
	if got != len(big) {
		t.Errorf("%d bytes, want %d", got, len(big))
	}
}

// A header list over MaxHeaderBytes gets 431; the connection goes on.
func TestHeaderListTooLarge(t *testing.T) {
	c := dialRaw(t, &Server{MaxHeaderBytes: 1024, Handler: okHandler})
	v := string(bytes.Repeat([]byte("b"), 400)) // each field under the limit, all of them over it
	c.headers(1, true, "x-a", v, "x-b", v, "x-c", v, "x-d", v)
	h := c.until("HEADERS", func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == 1 }).(*http2.MetaHeadersFrame)
	if got := h.PseudoValue("status"); got != "431" || !h.StreamEnded() {
		t.Errorf("status %q, END_STREAM %v; want 431 ending the stream", got, h.StreamEnded())
	}
	c.headers(3, true)
	c.until("a response on the same connection", func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == 3 && h.PseudoValue("status") == "200"
	})
}
