package proxy

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// h1LoopHarness serves every connection accepted on loopback with the
// proxy's HTTP/1 loop and handler h.
func h1LoopHarness(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.OutboundAddr, cfg.InboundAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.AdminAddr, cfg.ControlAddr = "127.0.0.1:0", "127.0.0.1:0"
	p, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := p.newHTTPServer("outbound")
	srv.srv.Handler = h
	go srv.srv.Serve(srv.ln)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); srv.srv.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			info := &connInfo{direction: "outbound"}
			tc := &trackedConn{Conn: c, info: info, series: p.metrics.TCP(info.target(info.dst), "src"), opened: time.Now()}
			go p.serveH1(srv, tc)
		}
	}()
	return ln.Addr().String()
}

func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A handler aborts (as serveOutbound does when the upstream's response
// body fails) while the upstream client's request writer still reads the
// request body, later or blocked on the socket. That reader must get an
// error, never bytes of the connection that reuses the pooled buffers,
// and must not race with the serve loop (go test -race).
func TestH1LoopAbortEndsBody(t *testing.T) {
	for _, blocked := range []bool{false, true} {
		t.Run(map[bool]string{false: "later-read", true: "blocked-read"}[blocked], func(t *testing.T) {
			late := make(chan string, 1)
			addr := h1LoopHarness(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/abort" {
					io.WriteString(w, "other")
					return
				}
				buf := make([]byte, 5)
				io.ReadFull(r.Body, buf)
				reading := make(chan struct{})
				go func() {
					if !blocked {
						time.Sleep(200 * time.Millisecond)
					}
					close(reading)
					b := make([]byte, 4096)
					var got string
					for {
						n, err := r.Body.Read(b)
						got += string(b[:n])
						if err != nil {
							late <- got + " err=" + err.Error()
							return
						}
					}
				}()
				if blocked {
					<-reading
					time.Sleep(20 * time.Millisecond) // in the Read, waiting for the client
				}
				panic(http.ErrAbortHandler)
			})
			a := dialT(t, addr)
			io.WriteString(a, "POST /abort HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			time.Sleep(50 * time.Millisecond)
			// Another client, served (and using pooled buffers) meanwhile.
			b := dialT(t, addr)
			br := bufio.NewReader(b)
			for i := range 5 {
				io.WriteString(b, "POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\nSECRET-FROM-B-123")
				b.SetReadDeadline(time.Now().Add(2 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("the other connection's request %d: %v", i, err)
				}
				io.ReadAll(resp.Body)
			}
			io.WriteString(a, "5\r\nworld\r\n")
			select {
			case s := <-late:
				t.Logf("the aborted request's body reader ended: %q", s)
				if strings.Contains(s, "SECRET") || strings.Contains(s, "world") || !strings.Contains(s, "err=") {
					t.Errorf("the aborted request's body read %q after the handler returned; want an error and no bytes", s)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("the aborted request's body reader is still blocked 3 s later")
			}
		})
	}
}

// An upload still streaming when the upstream's response fails midway:
// the proxy aborts the client's response, and another client's requests
// through the same proxy are served meanwhile (go test -race: no reader
// left on the aborted connection's pooled buffers).
func TestH1LoopAbortEndToEnd(t *testing.T) {
	app := listenTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/up" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
				time.Sleep(50 * time.Millisecond)
				return // the response body fails midway
			}
			io.ReadAll(req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tp := startProxy(t, nil, app)
	a := dialT(t, tp.bindings[0])
	io.WriteString(a, "POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\npart1\r\n")
	time.Sleep(300 * time.Millisecond)
	b := dialT(t, tp.bindings[0])
	br := bufio.NewReader(b)
	for i := range 5 {
		io.WriteString(b, "GET /x HTTP/1.1\r\nHost: app\r\n\r\n")
		b.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the other client's request %d: %v", i, err)
		}
		if body, _ := io.ReadAll(resp.Body); string(body) != "ok" {
			t.Fatalf("the other client's request %d: %q", i, body)
		}
	}
	io.WriteString(a, "5\r\npart2\r\n")
	a.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(a), nil)
	if err != nil {
		t.Fatalf("the aborted client: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	t.Logf("the aborted client: %s, %d of %d bytes, %v", resp.Status, len(body), resp.ContentLength, err)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("the aborted client's body ended with %v, want a short body (io.ErrUnexpectedEOF)", err)
	}
}

// An application that answers while it still reads the upload (full
// duplex): the proxy must forward the whole request body, not drain the
// rest when the response starts (net/http's server does that for handlers
// that have not enabled full duplex), which cut the upstream request
// short and ended it as complete.
func TestH1LoopFullDuplexUpload(t *testing.T) {
	got := make(chan string, 1)
	app := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		io.WriteString(w, "start\n")
		w.(http.Flusher).Flush()
		b, err := io.ReadAll(r.Body)
		msg := string(b)
		if err != nil {
			msg += " err=" + err.Error()
		}
		got <- msg
		io.WriteString(w, "end\n")
	}))
	tp := startProxy(t, nil, app)
	c := dialT(t, tp.bindings[0])
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\npart1\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"part2", "part3"} {
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "5\r\n"+p+"\r\n")
	}
	io.WriteString(c, "0\r\n\r\n")
	body, err := io.ReadAll(resp.Body)
	t.Logf("client: %s %q %v", resp.Status, body, err)
	select {
	case s := <-got:
		if s != "part1part2part3" {
			t.Errorf("the app received %q, want part1part2part3", s)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the app got no body")
	}
	if string(body) != "start\nend\n" {
		t.Errorf("the client got %q, want start and end", body)
	}
}
