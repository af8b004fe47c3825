package h2wire

import (
	"bytes"
	"fmt"
	"io"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Writer is the write side of an HTTP/2 connection, the same at both
// ends. Each Write runs an encode function that adds frames through
// Framer (a header block is first encoded through Enc into Block) and
// sends what it added with one Write to the connection. The first failed
// write is kept: every later Write returns it. The connection serialises
// its Writes (a write lock, which also guards Framer, Enc and Block).
type Writer struct {
	Framer *http2.Framer  // frames into the pending batch
	Enc    *hpack.Encoder // header fields into Block
	Block  bytes.Buffer   // the header block being encoded

	buf    bytes.Buffer
	dst    io.Writer
	prefix string      // of the error of a failed write: "h2server", "h2client"
	failed func(error) // called once, at the first failed write
	err    error
}

// NewWriter is a Writer to dst. failed is called once, with the error,
// when a write to dst fails (the connection's write lock held): HTTP/2
// cannot go on after lost frames, so it closes the connection.
func NewWriter(dst io.Writer, prefix string, failed func(error)) *Writer {
	w := &Writer{dst: dst, prefix: prefix, failed: failed}
	w.Framer = http2.NewFramer(&w.buf, nil)
	w.Enc = hpack.NewEncoder(&w.Block)
	return w
}

// Write runs encode and writes the frames it added. Its error is
// encode's (nothing is written then), the write's, or that of an earlier
// failed write.
func (w *Writer) Write(encode func() error) error {
	if w.err != nil {
		return w.err
	}
	w.buf.Reset()
	if err := encode(); err != nil {
		w.buf.Reset()
		return err
	}
	if w.buf.Len() == 0 {
		return nil
	}
	if _, err := w.dst.Write(w.buf.Bytes()); err != nil {
		w.err = fmt.Errorf("%s: write: %w", w.prefix, err)
		w.failed(w.err)
		return w.err
	}
	return nil
}

// WriteRaw adds s to the pending batch as it is (a client's connection
// preface); called from an encode function.
func (w *Writer) WriteRaw(s string) { w.buf.WriteString(s) }

// Err is the error of the failed write, if one failed.
func (w *Writer) Err() error { return w.err }

// WriteBlock writes Block as the HEADERS (and CONTINUATION) frames of
// stream id; called from an encode function.
func (w *Writer) WriteBlock(id uint32, endStream bool, maxFrame int) error {
	return WriteHeaderBlock(w.Framer, id, w.Block.Bytes(), endStream, maxFrame)
}
