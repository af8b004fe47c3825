package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/h2client"
)

const (
	frameRSTStream     = 0x3
	errCodeRefusedStrm = 0x7
)

// rawH2Server answers HTTP/2 connections frame by frame: for each request
// (a HEADERS frame; a body's DATA frames are read and ignored), answer
// writes what it returns. It counts connections and requests.
type rawH2Server struct {
	addr           string
	conns, streams atomic.Int64
	answer         func(conn, nth int64, stream uint32) []byte
}

func newRawH2Server(t *testing.T, answer func(conn, nth int64, stream uint32) []byte) *rawH2Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawH2Server{addr: l.Addr().String(), answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conn := s.conns.Add(1)
			wg.Go(func() { s.serve(c, conn) })
		}
	})
	return s
}

func (s *rawH2Server) serve(c net.Conn, conn int64) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := io.ReadFull(br, make([]byte, len(http2Preface))); err != nil {
		return
	}
	c.Write(appendFrame(nil, frameSettings, 0, 0, nil))
	for {
		f, err := readFrame(br)
		if err != nil {
			return
		}
		switch {
		case f.typ == frameSettings && f.flags&flagAck == 0:
			c.Write(appendFrame(nil, frameSettings, flagAck, 0, nil))
		case f.typ == frameHeaders:
			if _, err := c.Write(s.answer(conn, s.streams.Add(1), f.stream)); err != nil {
				return
			}
		}
	}
}

// h2OK is a 200 response with a 2-byte body on stream.
func h2OK(stream uint32) []byte {
	b := appendFrame(nil, frameHeaders, flagEndHdrs, stream, hpackLiteral(nil, ":status", "200"))
	return appendFrame(b, frameData, flagEndStream, stream, []byte("ok"))
}

func h2Refuse(stream uint32) []byte {
	return appendFrame(nil, frameRSTStream, 0, stream, binary.BigEndian.AppendUint32(nil, errCodeRefusedStrm))
}

// h2GoAway is a GOAWAY naming last as the last stream processed.
func h2GoAway(last uint32) []byte {
	p := binary.BigEndian.AppendUint32(nil, last)
	return appendFrame(nil, frameGoAway, 0, 0, binary.BigEndian.AppendUint32(p, 0))
}

func testH2Client(t *testing.T) *h2Client {
	t.Helper()
	var d net.Dialer
	c := newH2Client(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, h2client.Config{})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func h2Req(t *testing.T, method, addr string, body io.Reader) *http.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestH2ClientReusesConnections: requests to one pool share one connection,
// though the request that dialed it is over and its context canceled (as
// a proxied request's is when its handler returns); another pool name gets
// its own.
func TestH2ClientReusesConnections(t *testing.T) {
	srv := newRawH2Server(t, func(_, _ int64, stream uint32) []byte { return h2OK(stream) })
	c := testH2Client(t)
	for range 5 {
		req := h2Req(t, "GET", srv.addr, nil)
		ctx, cancel := context.WithCancel(req.Context())
		resp, err := c.RoundTrip(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
		resp.Body.Close()
		cancel()
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 requests to one pool, want 1", n)
	}
	// The same address under another pool name (as identityPool names an
	// mTLS peer) does not share the connection.
	req := h2Req(t, "GET", srv.addr, nil)
	req.URL.Host = "localhost:" + strings.Split(srv.addr, ":")[1]
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections after a request to another pool name, want 2", n)
	}
}

// TestH2ClientRetriesWhatWasNotSent: as the Transport does, a request the
// server refused (REFUSED_STREAM) or left out of a GOAWAY is sent again if
// it has no body, and one with a body is not.
func TestH2ClientRetriesWhatWasNotSent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refuse    func(stream uint32) []byte
		body      bool
		wantOK    bool
		wantConns int64
	}{
		{"refused stream, bodiless", h2Refuse, false, true, 1},
		{"GOAWAY, bodiless", func(uint32) []byte { return h2GoAway(0) }, false, true, 2},
		{"refused stream, with a body", h2Refuse, true, false, 1},
		{"GOAWAY, with a body", func(uint32) []byte { return h2GoAway(0) }, true, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawH2Server(t, func(_, nth int64, stream uint32) []byte {
				if nth == 1 {
					return tc.refuse(stream)
				}
				return h2OK(stream)
			})
			c := testH2Client(t)
			req := h2Req(t, "GET", srv.addr, nil)
			if tc.body {
				req = h2Req(t, "POST", srv.addr, io.NopCloser(strings.NewReader("payload")))
			}
			resp, err := c.RoundTrip(req)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("not retried: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			} else if err == nil {
				resp.Body.Close()
				t.Fatalf("a request with a body was sent again (%d requests)", srv.streams.Load())
			}
			if n := srv.conns.Load(); n != tc.wantConns {
				t.Errorf("%d connections, want %d", n, tc.wantConns)
			}
		})
	}
}

// TestH2ClientDropsClosedConnections: a connection the server closed is not
// used again and leaves the pool; pools of endpoints gone are dropped when
// a connection is made.
func TestH2ClientDropsClosedConnections(t *testing.T) {
	srv := newRawH2Server(t, func(conn, _ int64, stream uint32) []byte {
		if conn == 1 {
			return append(h2OK(stream), h2GoAway(stream)...)
		}
		return h2OK(stream)
	})
	c := testH2Client(t)
	gone := newRawH2Server(t, func(_, _ int64, stream uint32) []byte { return append(h2OK(stream), h2GoAway(stream)...) })
	resp, err := c.RoundTrip(h2Req(t, "GET", gone.addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Its GOAWAY lands before the sweep below looks at it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !poolClosed(c, gone.addr); {
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 3 {
		resp, err := c.RoundTrip(h2Req(t, "GET", srv.addr, nil))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i == 0 {
			// Let the GOAWAY land.
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) && !poolClosed(c, srv.addr) {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the first one closed by its GOAWAY)", n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pools[gone.addr]; p != nil {
		t.Errorf("the pool of an endpoint whose connection closed is kept: %d connections", len(p.conns))
	}
	if p := c.pools[srv.addr]; p == nil || len(p.conns) != 1 {
		t.Errorf("pool %s: %+v, want its one live connection", srv.addr, p)
	}
}

// poolClosed reports whether every connection of pool key is spent.
func poolClosed(c *h2Client, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pools[key]
	if p == nil {
		return true
	}
	for _, cc := range p.conns {
		if !spent(cc) {
			return false
		}
	}
	return true
}

// TestH2ClientOneDialPerPool: concurrent first requests to a pool wait for
// one connection rather than each dialing its own.
func TestH2ClientOneDialPerPool(t *testing.T) {
	srv := newRawH2Server(t, func(_, _ int64, stream uint32) []byte { return h2OK(stream) })
	c := testH2Client(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := c.RoundTrip(h2Req(t, "GET", srv.addr, nil))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d connections for 20 concurrent requests, want 1", n)
	}
}

// TestH2UnsentErrors: the error of a request on a connection that no
// longer takes requests (here after a GOAWAY) is one h2Unsent knows, with a
// body or not: nothing was sent.
func TestH2UnsentErrors(t *testing.T) {
	srv := newRawH2Server(t, func(_, _ int64, stream uint32) []byte { return append(h2OK(stream), h2GoAway(stream)...) })
	c := testH2Client(t)
	cc, err := c.connect(context.Background(), srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := cc.RoundTrip(h2Req(t, "GET", srv.addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for cc.Available() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	req := h2Req(t, "POST", srv.addr, io.NopCloser(strings.NewReader("payload")))
	_, err = cc.RoundTrip(req)
	if err == nil {
		t.Fatal("a connection after its GOAWAY took a request")
	}
	if !h2Unsent(req, err) {
		t.Errorf("h2Unsent(%q) = false; the request was not sent", err)
	}
}

// TestH2ClientFailedDialFailsItsWaiters: requests waiting for a pool's dial
// fail with it, at once, rather than each dialing in turn.
func TestH2ClientFailedDialFailsItsWaiters(t *testing.T) {
	var dials atomic.Int64
	release := make(chan struct{})
	c := newH2Client(func(ctx context.Context, _ string) (net.Conn, error) {
		dials.Add(1)
		<-release
		return nil, errors.New("connection refused (test)")
	}, h2client.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := c.RoundTrip(h2Req(t, "GET", "198.18.0.1:80", nil))
			errs <- err
		})
	}
	time.Sleep(100 * time.Millisecond) // all ten waiting on one dial
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil || !strings.Contains(err.Error(), "connection refused (test)") {
			t.Errorf("a request got %v, want the dial's error", err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials for 10 requests waiting on one that failed, want 1", n)
	}
}
