package h2server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/internal/h2wire/wiretest"
)

var getFields = []string{":method", "GET", ":scheme", "http", ":authority", "web.test", ":path", "/"}

// fuzzSeeds are client byte streams (after the preface) that reach the
// server's main paths: requests with and without bodies, trailers,
// CONTINUATION, resets, window updates, settings, pings, GOAWAY.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(build func(f *wiretest.Frames)) {
		f := wiretest.NewFrames()
		f.Framer.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		build(f)
		seeds = append(seeds, f.Bytes())
	}
	add(func(f *wiretest.Frames) {
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(getFields...), EndStream: true, EndHeaders: true})
	})
	add(func(f *wiretest.Frames) {
		post := []string{":method", "POST", ":scheme", "http", ":authority", "web.test", ":path", "/up", "content-length", "5", "content-type", "text/plain"}
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(post...), EndHeaders: true})
		f.Framer.WriteData(1, false, []byte("hel"))
		f.Framer.WriteWindowUpdate(0, 1000)
		f.Framer.WriteData(1, false, []byte("lo"))
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block("grpc-status", "0"), EndStream: true, EndHeaders: true})
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: f.Block(getFields...), EndStream: true, EndHeaders: true})
	})
	add(func(f *wiretest.Frames) {
		b := f.Block(append(getFields, "x-long", string(bytes.Repeat([]byte("v"), 40)))...)
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:10], EndStream: true})
		f.Framer.WriteContinuation(1, false, b[10:20])
		f.Framer.WriteContinuation(1, true, b[20:])
		f.Framer.WritePing(false, [8]byte{1})
		f.Framer.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	add(func(f *wiretest.Frames) {
		f.Framer.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 10})
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: f.Block(getFields...), EndHeaders: true, Priority: http2.PriorityParam{Weight: 3}})
		f.Framer.WriteWindowUpdate(5, 100)
		f.Framer.WriteData(5, true, nil)
		f.Framer.WriteSettingsAck()
		f.Framer.WriteGoAway(5, http2.ErrCodeNo, []byte("bye"))
	})
	add(func(f *wiretest.Frames) {
		f.Framer.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(getFields...), EndStream: true, EndHeaders: true})
		f.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: f.Block(getFields...), EndStream: true, EndHeaders: true})
		f.Framer.WriteRawFrame(0x20, 0, 1, []byte("unknown"))
	})
	return seeds
}

// FuzzServeConn serves a connection whose client sends the preface and
// then arbitrary bytes. The server must not panic, and the connection
// and its handlers must end once the client's bytes do. The seeds run
// with the other tests; fuzzing is by hand:
//
//	go test -run '^$' -fuzz FuzzServeConn -fuzztime 5m ./internal/h2server/
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{
			MaxConcurrentStreams: 8,
			MaxHeaderBytes:       4 << 10,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Trailer", "Grpc-Status")
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte("hello"))
				w.(http.Flusher).Flush()
				w.Write(bytes.Repeat([]byte("x"), 70000)) // beyond the initial window
				w.Header().Set("Grpc-Status", "0")
			}),
		}
		nc := wiretest.NewScriptConn([]byte(http2.ClientPreface), data, 0)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(context.Background(), nc)
		}()
		// ServeConn returns once its handlers have.
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn (or a handler) still running 10s after the client's last byte")
		}
	})
}
