package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestReplayBody(t *testing.T) {
	small := strings.Repeat("x", 1000)
	big := strings.Repeat("y", maxReplayBody+1)
	newReq := func(body string, length int64) *http.Request {
		r, _ := http.NewRequest("POST", "http://a/", io.NopCloser(strings.NewReader(body)))
		r.ContentLength = length
		return r
	}
	read := func(rc io.ReadCloser) string {
		b, _ := io.ReadAll(rc)
		return string(b)
	}
	tests := []struct {
		name       string
		body       string
		length     int64
		firstReads int // bytes the first attempt reads before the retry decision (-1: all)
		replayable bool
	}{
		{"read to the end", small, int64(len(small)), -1, true},
		{"unknown length", small, -1, -1, true},
		{"first attempt read part", small, -1, 100, true},
		{"first attempt read nothing", small, -1, 0, true},
		{"over 64 KiB", big, -1, -1, false},
		{"declared over 64 KiB", small, maxReplayBody + 1, -1, false},
	}
	for _, tt := range tests {
		b := newReplayBody(newReq(tt.body, tt.length))
		first := b.attempt()
		var got []byte
		if tt.firstReads < 0 {
			got, _ = io.ReadAll(first)
		} else {
			got = make([]byte, tt.firstReads)
			io.ReadFull(first, got)
		}
		if !strings.HasPrefix(tt.body, string(got)) {
			t.Errorf("%s: first attempt read %d bytes not from the body", tt.name, len(got))
		}
		if tt.firstReads < 0 && b.complete() != tt.replayable {
			t.Errorf("%s: after the first attempt read it all, complete = %v, want %v", tt.name, b.complete(), tt.replayable)
		}
		if ok := b.replayable(time.Second); ok != tt.replayable {
			t.Errorf("%s: replayable = %v, want %v", tt.name, ok, tt.replayable)
			continue
		}
		if tt.replayable {
			for i := range 2 {
				if r := read(b.attempt()); r != tt.body {
					t.Errorf("%s: replay %d = %d bytes, want the whole %d", tt.name, i, len(r), len(tt.body))
				}
			}
		}
	}

	// No attempt read the body before replayable (e.g. fail fast before
	// the first attempt, then a mirror copy): the first attempt's body
	// is what replayable read ahead.
	b := newReplayBody(newReq(small, -1))
	if !b.replayable(time.Second) {
		t.Fatal("not replayable")
	}
	if r := read(b.attempt()); r != small {
		t.Errorf("first attempt after read-ahead: %d bytes, want %d", len(r), len(small))
	}

	// The first attempt has read part of a body over 64 KiB when the retry
	// decision reads ahead and overflows: the first attempt must still get
	// every byte (the read-ahead is not dropped with the recording).
	big2 := strings.Repeat("0123456789", maxReplayBody/10+2000)
	b = newReplayBody(newReq(big2, -1))
	first := b.attempt()
	head := make([]byte, 100)
	io.ReadFull(first, head)
	if b.replayable(time.Second) {
		t.Error("a body over 64 KiB reported replayable")
	}
	if rest := read(first); string(head)+rest != big2 {
		t.Errorf("first attempt after an overflowing read-ahead: %d bytes, want the whole %d", len(head)+len(rest), len(big2))
	}

	// A client still sending is not replayable within the wait.
	pr, pw := io.Pipe()
	defer pw.Close()
	r, _ := http.NewRequest("POST", "http://a/", pr)
	b = newReplayBody(r)
	go pw.Write([]byte("partial"))
	if b.replayable(50 * time.Millisecond) {
		t.Error("a body still streaming reported replayable")
	}
	for _, body := range []io.ReadCloser{nil, http.NoBody} {
		if newReplayBody(&http.Request{Body: body}) != nil {
			t.Errorf("bodiless request (%v) got a replay body", body)
		}
	}
}
