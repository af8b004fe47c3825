package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// An HTTP/2 request that declares content-length: 0 and a trailer, and
// ends with a trailers HEADERS frame: the backend should see the trailer.
func TestH2ZeroLengthRequestTrailers(t *testing.T) {
	got := make(chan string, 1)
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- "proto=" + r.Proto + " trailer=" + r.Trailer.Get("X-T")
	}))
	tp := startProxy(t, nil, backend)
	c, err := net.Dial("tcp", tp.bindings[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var hb []byte
	hb = hpackLiteral(hb, ":method", "POST")
	hb = hpackLiteral(hb, ":scheme", "http")
	hb = hpackLiteral(hb, ":authority", "web.test")
	hb = hpackLiteral(hb, ":path", "/")
	hb = hpackLiteral(hb, "content-length", "0")
	hb = hpackLiteral(hb, "trailer", "x-t")
	b := appendFrame(h2Preface(), frameHeaders, flagEndHdrs, 1, hb)
	b = appendFrame(b, frameHeaders, flagEndHdrs|flagEndStream, 1, hpackLiteral(nil, "x-t", "v"))
	c.Write(b)
	readResponses(t, c, bufio.NewReader(c), 1)
	select {
	case s := <-got:
		t.Logf("backend saw %s", s)
		if s != "proto=HTTP/2.0 trailer=v" {
			t.Errorf("request trailer lost")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("backend saw nothing")
	}
}
