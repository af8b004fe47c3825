package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// A minimal HTTP/2 client speaking raw frames, so tests can see what the
// proxy puts on the wire (how many DATA frames, where END_STREAM is).

const (
	frameData     = 0x0
	frameHeaders  = 0x1
	frameSettings = 0x4
	frameGoAway   = 0x7
	flagEndStream = 0x1
	flagAck       = 0x1
	flagEndHdrs   = 0x4
)

type h2frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

func appendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, stream&0x7fffffff)
	return append(b, payload...)
}

// hpackLiteral encodes one header as a literal without indexing, name and
// value not Huffman-coded (RFC 7541 §6.2.2); strings under 127 bytes.
func hpackLiteral(b []byte, name, value string) []byte {
	b = append(b, 0x00, byte(len(name)))
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}

// h2GET is a HEADERS frame (END_HEADERS|END_STREAM) for GET path.
func h2GET(b []byte, stream uint32, authority, path string) []byte {
	var hb []byte
	hb = hpackLiteral(hb, ":method", "GET")
	hb = hpackLiteral(hb, ":scheme", "http")
	hb = hpackLiteral(hb, ":authority", authority)
	hb = hpackLiteral(hb, ":path", path)
	return appendFrame(b, frameHeaders, flagEndHdrs|flagEndStream, stream, hb)
}

func h2Preface() []byte {
	return appendFrame([]byte(http2Preface), frameSettings, 0, 0, nil)
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func readFrame(r io.Reader) (h2frame, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return h2frame{}, err
	}
	f := h2frame{typ: hdr[3], flags: hdr[4], stream: binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff}
	f.payload = make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	_, err := io.ReadFull(r, f.payload)
	return f, err
}

// readResponses reads frames until each of n streams has ended, acking
// SETTINGS, and returns each stream's DATA frames.
func readResponses(t *testing.T, c net.Conn, br *bufio.Reader, n int) map[uint32][]h2frame {
	t.Helper()
	data := map[uint32][]h2frame{}
	ended := 0
	for ended < n {
		f, err := readFrame(br)
		if err != nil {
			t.Fatalf("reading frames (%d of %d streams ended): %v", ended, n, err)
		}
		switch {
		case f.typ == frameSettings && f.flags&flagAck == 0:
			c.Write(appendFrame(nil, frameSettings, flagAck, 0, nil))
		case f.typ == frameGoAway:
			t.Fatalf("GOAWAY: %x", f.payload)
		case f.typ == frameData:
			data[f.stream] = append(data[f.stream], f)
		}
		if (f.typ == frameData || f.typ == frameHeaders) && f.flags&flagEndStream != 0 {
			ended++
		}
	}
	return data
}

// TestH2KnownLengthResponseEndsInItsDataFrame: a response whose length is
// known reaches an HTTP/2 client as its data with END_STREAM in one DATA
// frame, not a flushed DATA frame and then an empty one (a frame and a
// write more per response on each hop); a known-length response still
// being written is flushed as it goes, and a streamed one (no length)
// stays live.
func TestH2KnownLengthResponseEndsInItsDataFrame(t *testing.T) {
	release := make(chan struct{})
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/whole":
			w.Header().Set("Content-Length", "1024")
			w.Write(bytes.Repeat([]byte("x"), 1024))
		case "/parts":
			w.Header().Set("Content-Length", "8")
			w.Write([]byte("part"))
			http.NewResponseController(w).Flush()
			<-release
			w.Write([]byte("rest"))
		}
	}))
	addr, _, _ := pair(t, backend)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := c.Write(h2GET(h2Preface(), 1, "web.test", "/whole")); err != nil {
		t.Fatal(err)
	}
	frames := readResponses(t, c, br, 1)[1]
	var sizes []int
	for _, f := range frames {
		sizes = append(sizes, len(f.payload))
	}
	if len(frames) != 1 || len(frames[0].payload) != 1024 || frames[0].flags&flagEndStream == 0 {
		t.Errorf("DATA frames of a 1024-byte response: sizes %v (last END_STREAM: %v); want one frame of 1024 with END_STREAM",
			sizes, len(frames) > 0 && frames[len(frames)-1].flags&flagEndStream != 0)
	}

	// The first half of a known-length response arrives while the
	// backend holds the rest.
	if _, err := c.Write(h2GET(nil, 3, "web.test", "/parts")); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := readFrame(br)
		if err != nil {
			t.Fatalf("the first part of an unfinished known-length response never came: %v", err)
		}
		if f.typ == frameData && f.stream == 3 {
			if string(f.payload) != "part" || f.flags&flagEndStream != 0 {
				t.Errorf("first DATA frame = %q (END_STREAM %v), want \"part\" without END_STREAM", f.payload, f.flags&flagEndStream != 0)
			}
			break
		}
	}
	close(release)
	rest := readResponses(t, c, br, 1)[3]
	if len(rest) == 0 || string(rest[0].payload) != "rest" {
		t.Errorf("rest of the response: %d frames, want \"rest\"", len(rest))
	}
}

// countingConn counts the reads and writes made on a connection.
type countingConn struct {
	net.Conn
	reads, writes atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestH2ServerConnReadsAreBuffered: an HTTP/2 connection handed to the
// proxy's server is read through a buffer, so a burst of frames written
// at once costs a few reads, not two (header, payload) per frame.
func TestH2ServerConnReadsAreBuffered(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	tp := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: backend}}}
	})
	c, server := tcpPair(t)
	sc := &countingConn{Conn: server}
	go tp.serveHTTPConn(sc, &connInfo{direction: compat.Outbound, dst: "web.test:80", tls: compat.TLSDisabled}, true)

	const streams = 20
	c.SetDeadline(time.Now().Add(10 * time.Second))
	burst := h2Preface()
	for i := range streams {
		burst = h2GET(burst, uint32(2*i+1), "web.test", "/r"+strconv.Itoa(i))
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	got := readResponses(t, c, bufio.NewReader(c), streams)
	for i := range streams {
		id := uint32(2*i + 1)
		var body []byte
		for _, f := range got[id] {
			body = append(body, f.payload...)
		}
		if string(body) != "ok" {
			t.Fatalf("stream %d body = %q, want ok", id, body)
		}
	}
	// 21 frames (SETTINGS and 20 HEADERS) arrived in one write; unbuffered,
	// Go's HTTP/2 server reads each frame's header and payload apart (42
	// reads at least). The client's SETTINGS ack adds a read or two.
	if n := sc.reads.Load(); n > 8 {
		t.Errorf("the proxy made %d reads for %d frames written at once; want a few (buffered)", n, streams+1)
	}
}

// TestH2BodilessRequestEndsWithItsHeaders: a GET that ended with its
// HEADERS frame is sent on by the proxies the same way (END_STREAM on
// HEADERS), not as HEADERS and then an empty DATA frame, each flushed.
func TestH2BodilessRequestEndsWithItsHeaders(t *testing.T) {
	type seen struct {
		headerFlags byte
		dataFrames  int
	}
	got := make(chan seen, 1)
	backend := listenTCP(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if _, err := io.ReadFull(br, make([]byte, len(http2Preface))); err != nil {
			return
		}
		c.Write(appendFrame(nil, frameSettings, 0, 0, nil))
		var s seen
		for {
			f, err := readFrame(br)
			if err != nil {
				return
			}
			switch f.typ {
			case frameSettings:
				if f.flags&flagAck == 0 {
					c.Write(appendFrame(nil, frameSettings, flagAck, 0, nil))
				}
			case frameHeaders:
				s.headerFlags = f.flags
				if f.flags&flagEndStream != 0 {
					got <- s
				}
				// :status 200 (static table index 8), no body.
				c.Write(appendFrame(nil, frameHeaders, flagEndHdrs|flagEndStream, f.stream, []byte{0x88}))
			case frameData:
				s.dataFrames++
				if f.flags&flagEndStream != 0 {
					got <- s
				}
			}
		}
	})
	addr, _, _ := pair(t, backend)
	resp, err := h2cClient().Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("response %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	select {
	case s := <-got:
		if s.headerFlags&flagEndStream == 0 || s.dataFrames != 0 {
			t.Errorf("the application got HEADERS with END_STREAM %v and %d DATA frames; want END_STREAM on HEADERS, no DATA",
				s.headerFlags&flagEndStream != 0, s.dataFrames)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the application never saw the request end")
	}
}

// TestH2BodilessRequestsAreRetried: an HTTP/2 GET (no body: its stream
// ended with its HEADERS) is retried around a dead endpoint as an HTTP/1
// GET is.
func TestH2BodilessRequestsAreRetried(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(echo))
	dead := deadAddr(t)
	tp := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"svc.test:80": {{Addr: dead}, {Addr: backend}}}
	}, "svc.test:80")
	client := h2cClient()
	for i := range 40 {
		resp, err := client.Get("http://" + tp.bindings[0] + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Fatalf("GET %d: %s %d (%s), want HTTP/2 200 after a retry", i, resp.Proto, resp.StatusCode, resp.Header.Get(compat.HeaderProxyError))
		}
	}
}
