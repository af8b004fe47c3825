package h2wire

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		canonical, lower string
		valid            bool
	}{
		{"Content-Type", "content-type", true},
		{"L5d-Dst-Override", "l5d-dst-override", true},
		{"X-Custom", "x-custom", true},
		{"Bad Name", "", false},
	} {
		lk, ok := LowerName(tc.canonical)
		if lk != tc.lower || ok != tc.valid {
			t.Errorf("LowerName(%q) = %q, %v; want %q, %v", tc.canonical, lk, ok, tc.lower, tc.valid)
		}
		if !tc.valid {
			continue
		}
		var c Canon
		for range 2 { // the second from the cache
			if got := c.Canonical(tc.lower); got != tc.canonical {
				t.Errorf("Canonical(%q) = %q, want %q", tc.lower, got, tc.canonical)
			}
		}
	}
}

// TestWriteHeaderBlock: a block over the frame size goes out as HEADERS
// and CONTINUATION frames, END_HEADERS on the last only, and reads back
// whole.
func TestWriteHeaderBlock(t *testing.T) {
	for _, tc := range []struct {
		size, frames int
	}{
		{10, 1}, {16384, 1}, {16385, 2}, {40000, 3},
	} {
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, &buf)
		block := bytes.Repeat([]byte{'x'}, tc.size)
		if err := WriteHeaderBlock(fr, 3, block, true, DefaultFrameSize); err != nil {
			t.Fatal(err)
		}
		var got []byte
		frames := 0
		for buf.Len() > 0 {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			frames++
			switch f := f.(type) {
			case *http2.HeadersFrame:
				if !f.StreamEnded() || f.HeadersEnded() != (tc.frames == 1) {
					t.Errorf("size %d: HEADERS flags %v", tc.size, f.Flags)
				}
				got = append(got, f.HeaderBlockFragment()...)
			case *http2.ContinuationFrame:
				if f.HeadersEnded() != (frames == tc.frames) {
					t.Errorf("size %d: CONTINUATION %d flags %v", tc.size, frames, f.Flags)
				}
				got = append(got, f.HeaderBlockFragment()...)
			}
		}
		if frames != tc.frames || !bytes.Equal(got, block) {
			t.Errorf("size %d: %d frames carrying %d bytes; want %d frames", tc.size, frames, len(got), tc.frames)
		}
	}
}

// TestRecvWindow: credit is used by DATA and given back in one update
// once half the window is owed; more than the credit is refused.
func TestRecvWindow(t *testing.T) {
	const size = 100
	w := NewRecvWindow(size)
	for _, step := range []struct {
		take, ret int64
		ok        bool
		inc       int64
	}{
		{take: 30, ok: true, ret: 30, inc: 0},  // 30 owed, under half
		{take: 70, ok: true, ret: 20, inc: 50}, // 50 owed: returned
		{take: 51, ok: false},                  // 50 credit left
		{take: 50, ok: true, ret: 49, inc: 0},
	} {
		if ok := w.Take(step.take); ok != step.ok {
			t.Fatalf("Take(%d) = %v, want %v (window %+v)", step.take, ok, step.ok, w)
		}
		if !step.ok {
			continue
		}
		if inc := w.Return(step.ret, size); inc != step.inc {
			t.Errorf("Return(%d) = %d, want %d", step.ret, inc, step.inc)
		}
	}
}
