package h2client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/h2wire/wiretest"
)

// clientFuzzSeeds are server byte streams (after its SETTINGS) that
// answer the fuzzed requests (streams 1 and 3) along the client's main
// paths: bodies, trailers, CONTINUATION, 1xx, resets, window updates,
// settings, pings, GOAWAY.
func clientFuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(build func(f *wiretest.Frames)) {
		f := wiretest.NewFrames()
		f.Framer.WriteSettingsAck()
		build(f)
		seeds = append(seeds, f.Bytes())
	}
	add(func(f *wiretest.Frames) {
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(":status", "200", "content-length", "5"), EndHeaders: true})
		f.Framer.WriteData(1, true, []byte("hello"))
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.Block(":status", "204"), EndStream: true, EndHeaders: true})
	})
	add(func(f *wiretest.Frames) {
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.Block(":status", "100"), EndHeaders: true})
		f.Framer.WriteWindowUpdate(0, 1000)
		f.Framer.WriteWindowUpdate(3, 1000)
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.Block(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
		f.Framer.WriteData(3, false, []byte("abc"))
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.Block("grpc-status", "0"), EndStream: true, EndHeaders: true})
		f.Framer.WriteRSTStream(1, http2.ErrCodeRefusedStream)
	})
	add(func(f *wiretest.Frames) {
		b := f.Block(":status", "200", "x-long", strings.Repeat("v", 40))
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:8]})
		f.Framer.WriteContinuation(1, false, b[8:16])
		f.Framer.WriteContinuation(1, true, b[16:])
		f.Framer.WritePing(false, [8]byte{1})
		f.Framer.WriteData(1, false, bytes.Repeat([]byte("x"), 100))
		f.Framer.WriteRSTStream(1, http2.ErrCodeNo)
		f.Framer.WriteGoAway(1, http2.ErrCodeNo, []byte("bye"))
	})
	add(func(f *wiretest.Frames) {
		f.Framer.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1},
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1})
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(":status", "200"), EndStream: true, EndHeaders: true})
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(":status", "200"), EndStream: true, EndHeaders: true})
		f.Framer.WriteRawFrame(0x20, 0, 3, []byte("unknown"))
		f.Framer.WriteData(3, true, []byte("x"))
	})
	return seeds
}

// FuzzClientConn runs a GET and a POST on a connection whose server
// answers with arbitrary bytes. The client must not panic, and every
// request must end (with its response read or an error) once the server's
// bytes do. The seeds run with the other tests; fuzzing is by hand:
//
//	go test -run '^$' -fuzz FuzzClientConn -fuzztime 5m ./internal/h2client/
func FuzzClientConn(f *testing.F) {
	for _, s := range clientFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The server's SETTINGS, then the script once the client has
		// written its preface and each request's HEADERS.
		var settings bytes.Buffer
		http2.NewFramer(&settings, nil).WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
		nc := wiretest.NewScriptConn(settings.Bytes(), data, 3)
		cc, err := New(nc, Config{MaxHeaderBytes: 4 << 10, PingAfter: time.Hour, IdleTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		exchange := func(method string, body io.Reader) {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, method, "http://web.test/", body)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := cc.RoundTrip(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		wg.Add(2)
		go exchange(http.MethodGet, nil)
		go exchange(http.MethodPost, strings.NewReader("hello"))
		// Should a request not get its HEADERS out (the gate counts
		// writes), the script goes anyway.
		time.AfterFunc(time.Second, nc.Open)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a request still running 10s after the server's last byte")
		}
	})
}
