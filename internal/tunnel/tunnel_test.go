package tunnel

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Port: 5432},
		{Port: 6379, Name: "redis.cache.svc.cluster.local:6379"},
		{Port: 65535, Name: strings.Repeat("x", MaxName)},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, h); err != nil {
			t.Fatalf("Write(%+v): %v", h, err)
		}
		buf.WriteString("payload")
		got, err := Read(&buf)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if got != h {
			t.Errorf("got %+v, want %+v", got, h)
		}
		if rest, _ := io.ReadAll(&buf); string(rest) != "payload" {
			t.Errorf("Read consumed more than the header: rest %q", rest)
		}
	}
}

// TestWire pins the encoding: a change here is a new version.
func TestWire(t *testing.T) {
	b, err := Header{Port: 5432, Name: "db"}.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{'W', 'T', 1, 0, 0x15, 0x38, 0, 2, 'd', 'b'}
	if !bytes.Equal(b, want) {
		t.Errorf("got % x, want % x", b, want)
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), ErrMagic},
		{"version 2", []byte{'W', 'T', 2, 0, 0, 80, 0, 0}, ErrVersion},
		{"flags", []byte{'W', 'T', 1, 1, 0, 80, 0, 0}, ErrHeader},
		{"port 0", []byte{'W', 'T', 1, 0, 0, 0, 0, 0}, ErrHeader},
		{"name too long", []byte{'W', 'T', 1, 0, 0, 80, 0xff, 0xff}, ErrHeader},
		{"short", []byte{'W', 'T', 1}, io.ErrUnexpectedEOF},
		{"short name", []byte{'W', 'T', 1, 0, 0, 80, 0, 5, 'a'}, io.ErrUnexpectedEOF},
	} {
		_, err := Read(bytes.NewReader(tc.in))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := Write(io.Discard, Header{}); !errors.Is(err, ErrHeader) {
		t.Errorf("Write of port 0: got %v, want ErrHeader", err)
	}
	if err := Write(io.Discard, Header{Port: 1, Name: strings.Repeat("x", MaxName+1)}); !errors.Is(err, ErrHeader) {
		t.Errorf("Write of a long name: got %v, want ErrHeader", err)
	}
}

// FuzzRead: any input is read without panicking, and whatever is accepted
// encodes back to the bytes it was read from.
func FuzzRead(f *testing.F) {
	f.Add([]byte{'W', 'T', 1, 0, 0x15, 0x38, 0, 2, 'd', 'b'})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := Read(r)
		if err != nil {
			return
		}
		b, err := h.Append(nil)
		if err != nil {
			t.Fatalf("accepted %+v but cannot encode it: %v", h, err)
		}
		if !bytes.Equal(b, in[:len(in)-r.Len()]) {
			t.Fatalf("re-encoding % x, read from % x", b, in[:len(in)-r.Len()])
		}
	})
}
