package h2wire

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// recorder keeps each Write it gets, failing from the failAt-th on (1-based;
// 0 never).
type recorder struct {
	writes [][]byte
	failAt int
}

var errBroken = errors.New("broken pipe")

func (r *recorder) Write(p []byte) (int, error) {
	if r.failAt > 0 && len(r.writes)+1 >= r.failAt {
		return 0, errBroken
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func TestWriterOneWritePerOperation(t *testing.T) {
	rec := &recorder{}
	w := NewWriter(rec, "test", func(error) { t.Error("failed called without a failed write") })
	err := w.Write(func() error {
		w.WriteRaw(http2.ClientPreface)
		w.Block.Reset()
		w.Enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		if err := w.WriteBlock(1, false, DefaultFrameSize); err != nil {
			return err
		}
		return w.Framer.WriteData(1, true, []byte("hello"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := len(rec.writes); got != 1 {
		t.Fatalf("writes = %d, want 1 (one for the frames, none for an empty operation)", got)
	}
	b := rec.writes[0]
	if !bytes.HasPrefix(b, []byte(http2.ClientPreface)) {
		t.Fatalf("the preface is not first: %q", b[:min(len(b), 30)])
	}
	fr := http2.NewFramer(nil, bytes.NewReader(b[len(http2.ClientPreface):]))
	var types []http2.FrameType
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		types = append(types, f.Header().Type)
	}
	if len(types) != 2 || types[0] != http2.FrameHeaders || types[1] != http2.FrameData {
		t.Errorf("frames = %v, want [HEADERS DATA]", types)
	}
}

func TestWriterEncodeErrorWritesNothing(t *testing.T) {
	rec := &recorder{}
	w := NewWriter(rec, "test", func(error) { t.Error("failed called for an encode error") })
	bad := errors.New("bad field")
	err := w.Write(func() error {
		w.Framer.WriteData(1, false, []byte("half"))
		return bad
	})
	if !errors.Is(err, bad) {
		t.Fatalf("err = %v, want %v", err, bad)
	}
	if err := w.Write(func() error { return w.Framer.WritePing(false, [8]byte{}) }); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 || len(rec.writes[0]) != 9+8 {
		t.Errorf("writes = %d (%v), want the PING frame alone: the failed operation's DATA dropped", len(rec.writes), rec.writes)
	}
	if w.Err() != nil {
		t.Errorf("Err() = %v after an encode error, want nil", w.Err())
	}
}

func TestWriterKeepsTheFirstFailure(t *testing.T) {
	rec := &recorder{failAt: 1}
	var failures []error
	w := NewWriter(rec, "test", func(err error) { failures = append(failures, err) })
	ping := func() error { return w.Framer.WritePing(false, [8]byte{}) }
	first := w.Write(ping)
	if !errors.Is(first, errBroken) || first.Error() != "test: write: broken pipe" {
		t.Fatalf("first error = %v, want test: write: broken pipe", first)
	}
	encoded := false
	second := w.Write(func() error { encoded = true; return ping() })
	if second != first || encoded {
		t.Errorf("second Write = %v (encoded %v), want the first error without encoding", second, encoded)
	}
	if len(failures) != 1 || failures[0] != first {
		t.Errorf("failed called %d times (%v), want once with the first error", len(failures), failures)
	}
	if w.Err() != first {
		t.Errorf("Err() = %v, want %v", w.Err(), first)
	}
}
