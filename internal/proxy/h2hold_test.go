package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/compat"
)

// TestH2ResponseHeadersAndDataInOneWrite: the proxy's HTTP/2 server sends a
// response's HEADERS and DATA frames in one write (Go's server flushes
// each apart: two writes, two syscalls per response). The proxy's own
// server (internal/h2server) writes them together; with net/http's
// (Config.NetHTTP2Server) the hold or the connection's batching
// (h2batch.go) does; TestH2WriteHoldFrameBoundaries tests the hold.
func TestH2ResponseHeadersAndDataInOneWrite(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 1024))
	}))
	// The first response (after SETTINGS and their acks) is not counted.
	client, br, sc := servedH2Conn(t, backend)

	const n = 20
	before := sc.writes.Load()
	for i := range n {
		id := uint32(3 + 2*i)
		client.Write(h2GET(nil, id, "web.test", "/r"))
		got := readResponses(t, client, br, 1)[id]
		if len(got) != 1 || len(got[0].payload) != 1024 {
			t.Fatalf("stream %d: %d DATA frames, want one of 1024 bytes", id, len(got))
		}
	}
	// Without the hold: 2n. A loaded machine (the race detector) may let
	// the 1 ms pass between a HEADERS frame and its DATA now and then.
	if w := sc.writes.Load() - before; w > n+n/2 {
		t.Errorf("%d writes for %d responses; want about one each (HEADERS and DATA together), not two", w, n)
	}

}

// servedH2Conn hands a proxy one side of a loopback TCP pair as an
// outbound HTTP/2 connection to web.test:80 (backend), its writes counted,
// and makes a first request on it (/warm): the client side, its reader and
// the proxy's counted side.
func servedH2Conn(t *testing.T, backend string) (net.Conn, *bufio.Reader, *countingConn) {
	t.Helper()
	tp := startProxy(t, func(c *Config) {
		c.Destinations = map[string][]EndpointSpec{"web.test:80": {{Addr: backend}}}
	})
	client, server := tcpPair(t)
	sc := &countingConn{Conn: server}
	go tp.serveHTTPConn(sc, &connInfo{direction: compat.Outbound, dst: "web.test:80", tls: compat.TLSDisabled}, true)
	client.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	client.Write(h2Preface())
	client.Write(h2GET(nil, 1, "web.test", "/warm"))
	readResponses(t, client, br, 1)
	return client, br, sc
}

// TestH2WriteHoldFrameBoundaries: only a write ending with a HEADERS frame
// that opens a body is held, wherever the writes split the frames, and a
// held write goes out with the next one or on its own after h2HoldDelay.
func TestH2WriteHoldFrameBoundaries(t *testing.T) {
	headers := appendFrame(nil, frameHeaders, flagEndHdrs, 1, []byte("hdrs"))
	endHeaders := appendFrame(nil, frameHeaders, flagEndHdrs|flagEndStream, 1, []byte("hdrs"))
	data := appendFrame(nil, frameData, flagEndStream, 1, []byte("body"))
	bigData := appendFrame(nil, frameData, flagEndStream, 1, bytes.Repeat([]byte("b"), h2HoldMax))
	// A DATA frame whose payload looks like an open HEADERS frame header.
	tricky := appendFrame(nil, frameData, 0, 1, headers[:9])
	tests := []struct {
		name   string
		writes [][]byte
		want   []bool // whether each write is held
	}{
		{"headers then data", [][]byte{headers, data}, []bool{true, false}},
		{"headers alone (sent after the delay)", [][]byte{headers}, []bool{true}},
		{"headers then data larger than the hold", [][]byte{headers, bigData}, []bool{true, false}},
		{"headers ending the stream", [][]byte{endHeaders}, []bool{false}},
		{"data and headers in one write", [][]byte{append(append([]byte{}, data...), headers...)}, []bool{true}},
		{"headers split across writes", [][]byte{headers[:5], headers[5:11], headers[11:]}, []bool{false, false, true}},
		{"payload that looks like a frame header", [][]byte{tricky[:9], tricky[9:]}, []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &lockedBuffer{}
			h := newH2WriteHold(out)
			timed := strings.Contains(tt.name, "after the delay")
			if !timed {
				// Held is held, however late this goroutine runs; the
				// rest is flushed below.
				h.delay = time.Hour
			}
			var all []byte
			for i, w := range tt.writes {
				before := out.Len()
				if _, err := h.Write(w); err != nil {
					t.Fatal(err)
				}
				all = append(all, w...)
				held := out.Len() == before
				if held != tt.want[i] {
					t.Errorf("write %d held = %v, want %v", i, held, tt.want[i])
				}
			}
			if !timed {
				h.flushHeld()
			}
			deadline := time.Now().Add(5 * time.Second)
			for out.Len() < len(all) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := out.Bytes(); !bytes.Equal(got, all) {
				t.Errorf("bytes out = %x, want %x", got, all)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for the hold's timer and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Len() }

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte{}, l.b.Bytes()...)
}
