package h2wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHeaderReader: blocks as a peer writes them (split over
// CONTINUATION frames, the dynamic table in use across blocks) decode
// into their fields; malformed ones are stream errors that leave the
// table in step for the next block; a list over the limit is Truncated.
func TestHeaderReader(t *testing.T) {
	long := strings.Repeat("v", 20000) // over one frame: HEADERS + CONTINUATION
	for _, tc := range []struct {
		name      string
		fields    []string // name, value pairs
		want      string   // the fields read, "name=value;..."; "" with wantErr
		truncated bool
		wantErr   bool
	}{
		{"request", []string{":method", "GET", ":path", "/", "user-agent", "x"}, ":method=GET;:path=/;user-agent=x", false, false},
		{"response over frames", []string{":status", "200", "x-long", long}, ":status=200;x-long=" + long, false, false},
		{"upper-case name", []string{":status", "200", "X-Bad", "v"}, "", false, true},
		{"pseudo after regular", []string{"a", "b", ":status", "200"}, "", false, true},
		{"repeated pseudo", []string{":status", "200", ":status", "204"}, "", false, true},
		{"unknown pseudo", []string{":bogus", "1"}, "", false, true},
		{"request and response", []string{":status", "200", ":path", "/"}, "", false, true},
		{"bad value", []string{":status", "200", "a", "x\x00y"}, "", false, true},
		{"over the limit", []string{":status", "200", "a", strings.Repeat("x", 3000), "b", strings.Repeat("y", 3000)}, ":status=200;a=" + strings.Repeat("x", 3000), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wire bytes.Buffer
			fr := http2.NewFramer(&wire, &wire)
			var hbuf bytes.Buffer
			enc := hpack.NewEncoder(&hbuf)
			write := func(id uint32, fields []string) {
				hbuf.Reset()
				for i := 0; i+1 < len(fields); i += 2 {
					enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
				}
				if err := WriteHeaderBlock(fr, id, hbuf.Bytes(), true, DefaultFrameSize); err != nil {
					t.Fatal(err)
				}
			}
			// The block under test, then one that indexes a field the
			// first added to the table.
			write(1, tc.fields)
			write(3, []string{":status", "204", "user-agent", "x"})
			r := NewHeaderReader(25000 + 64*3)
			if tc.truncated {
				r = NewHeaderReader(4096)
			}
			read := func() (*HeaderBlock, error) {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				return r.Read(fr, f.(*http2.HeadersFrame))
			}
			b, err := read()
			var se http2.StreamError
			switch {
			case tc.wantErr:
				if !errors.As(err, &se) || se.Code != http2.ErrCodeProtocol || se.StreamID != 1 {
					t.Fatalf("got %v, want a PROTOCOL_ERROR stream error", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got := joinFields(b.Fields); got != tc.want || b.Truncated != tc.truncated || !b.EndStream || b.StreamID != 1 {
					t.Errorf("got %.80q (truncated %v, end %v, stream %d), want %.80q (truncated %v)", got, b.Truncated, b.EndStream, b.StreamID, tc.want, tc.truncated)
				}
				if n := len(b.PseudoFields()); n != 1 && n != 2 {
					t.Errorf("%d pseudo-header fields", n)
				}
			}
			b, err = read()
			if err != nil {
				t.Fatalf("the next block: %v", err)
			}
			if got := joinFields(b.Fields); got != ":status=204;user-agent=x" {
				t.Errorf("the next block: %q", got)
			}
		})
	}
}

func joinFields(fields []hpack.HeaderField) string {
	var parts []string
	for _, hf := range fields {
		parts = append(parts, hf.Name+"="+hf.Value)
	}
	return strings.Join(parts, ";")
}

// TestHeaderReaderCompressionError: a block that is not HPACK is a
// connection error.
func TestHeaderReaderCompressionError(t *testing.T) {
	var wire bytes.Buffer
	fr := http2.NewFramer(&wire, &wire)
	WriteHeaderBlock(fr, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff}, true, DefaultFrameSize)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewHeaderReader(4096).Read(fr, f.(*http2.HeadersFrame))
	if ce, ok := err.(http2.ConnectionError); !ok || http2.ErrCode(ce) != http2.ErrCodeCompression {
		t.Errorf("got %v, want COMPRESSION_ERROR", err)
	}
}

// TestHeaderReaderContinuationFlood: CONTINUATION frames after a block
// went over the limit, or after a malformed field, end the connection
// instead of being decoded as long as the peer sends them.
func TestHeaderReaderContinuationFlood(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []string
	}{
		{"over the limit", []string{":status", "200", "a", strings.Repeat("x", 3000)}},
		{"malformed field", []string{":status", "200", "Bad", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wire bytes.Buffer
			fr := http2.NewFramer(&wire, &wire)
			var hbuf bytes.Buffer
			enc := hpack.NewEncoder(&hbuf)
			for i := 0; i+1 < len(tc.first); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: tc.first[i], Value: tc.first[i+1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes()})
			for range 100 {
				hbuf.Reset()
				enc.WriteField(hpack.HeaderField{Name: "more", Value: "x"})
				fr.WriteContinuation(1, false, hbuf.Bytes())
			}
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			_, err = NewHeaderReader(1024).Read(fr, f.(*http2.HeadersFrame))
			if ce, ok := err.(http2.ConnectionError); !ok || http2.ErrCode(ce) != http2.ErrCodeProtocol {
				t.Fatalf("got %v, want PROTOCOL_ERROR for the connection", err)
			}
			if left := wire.Len(); left == 0 {
				t.Error("every CONTINUATION frame was read")
			}
		})
	}
}
