package proxy

import (
	"io"
	"net/http"
	"testing"
	"unsafe"
)

// stackUse calls itself until it has used about n bytes of stack below its
// caller.
//
//go:noinline
func stackUse(n int) byte {
	var frame [256]byte
	frame[n%len(frame)] = byte(n)
	if n <= len(frame) {
		return frame[0]
	}
	return stackUse(n-len(frame)) + frame[n%len(frame)]
}

// stackMoved reports whether using n bytes of stack below the caller
// moved (grew and copied) the goroutine's stack: a stack variable's
// address changes when its stack is copied.
//
//go:noinline
func stackMoved(n int) bool {
	var here byte
	before := uintptr(unsafe.Pointer(&here))
	stackUse(n)
	return uintptr(unsafe.Pointer(&here)) != before
}

// TestGrownStackHoldsTheHandler: an HTTP/2 request's handler behind
// grownStack uses the stack the proxy's handler path needs without the
// stack moving; without grownStack it moves (the stack is grown and copied
// on the way down, as the proxy's handlers' stacks were on every request).
func TestGrownStackHoldsTheHandler(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation enlarges every frame")
	}
	tests := []struct {
		name  string
		grown bool
		moved bool
	}{
		{"grown", true, false},
		{"not grown", false, true},
	}
	const use = h2HandlerStack / 2
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moved := make(chan bool, 1)
			var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				moved <- stackMoved(use)
			})
			if tt.grown {
				h = grownStack(h)
			}
			url := "http://" + h2cServer(t, h) + "/"
			resp, err := h2cClient().Get(url)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("served over %s, want HTTP/2", resp.Proto)
			}
			if got := <-moved; got != tt.moved {
				t.Errorf("stack moved using %d bytes: %v, want %v", use, got, tt.moved)
			}
		})
	}
}
