package h2wire

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// HeaderBlock is a decoded header block: its pseudo-header fields first,
// then the others. Fields are valid until the next block is read.
type HeaderBlock struct {
	StreamID  uint32
	EndStream bool
	// Truncated: the header list was over the limit; Fields holds the
	// fields that fitted.
	Truncated bool
	Fields    []hpack.HeaderField
	nPseudo   int
}

// PseudoFields are the block's pseudo-header fields (":status", ":path"...).
func (b *HeaderBlock) PseudoFields() []hpack.HeaderField { return b.Fields[:b.nPseudo] }

// RegularFields are the block's other fields.
func (b *HeaderBlock) RegularFields() []hpack.HeaderField { return b.Fields[b.nPseudo:] }

// HeaderReader decodes the header blocks a connection receives, in place
// of the Framer's ReadMetaHeaders, which allocates a frame and grows a
// new field list for every block (a fifth of the objects each proxy
// allocated in the h2 mTLS pair, issue 17): the fields go into one list
// the connection keeps. It checks what ReadMetaHeaders checks, its
// bounds on CONTINUATION frames included. It is not safe for concurrent
// use.
type HeaderReader struct {
	dec        *hpack.Decoder
	maxList    uint32
	block      HeaderBlock
	remain     uint32 // of maxList, for the block being read
	invalid    error  // the block's first malformed field
	sawRegular bool
}

// NewHeaderReader decodes header lists of at most maxList bytes (as
// RFC 9113 counts them); a longer one is Truncated.
func NewHeaderReader(maxList uint32) *HeaderReader {
	r := &HeaderReader{maxList: maxList}
	r.dec = hpack.NewDecoder(4096, r.emit)
	r.dec.SetMaxStringLength(int(maxList))
	return r
}

// Read decodes the block that f starts, reading its CONTINUATION frames
// from fr (the Framer checks that they follow in order). A malformed
// field makes the block an http2.StreamError (PROTOCOL_ERROR) once all of
// it was decoded, which keeps the connection's table in step; a block
// that cannot be decoded is a connection error (COMPRESSION_ERROR).
func (r *HeaderReader) Read(fr *http2.Framer, f *http2.HeadersFrame) (*HeaderBlock, error) {
	b := &r.block
	b.StreamID, b.EndStream, b.Truncated = f.StreamID, f.StreamEnded(), false
	clear(b.Fields) // the strings of the last block
	b.Fields, b.nPseudo = b.Fields[:0], 0
	r.remain, r.invalid, r.sawRegular = r.maxList, nil, false
	r.dec.SetEmitEnabled(true)
	frag, ended := f.HeaderBlockFragment(), f.HeadersEnded()
	for {
		// A block far over the limit, or going on after a malformed
		// field (whose size is no longer counted), ends the connection
		// rather than being decoded for as long as the peer sends
		// CONTINUATION frames (CVE-2023-45288; x/net's checks).
		if int64(len(frag)) > 2*int64(r.remain) || r.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		// Decoded before the next frame is read: the fragment is the
		// Framer's buffer.
		if _, err := r.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		next, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf, ok := next.(*http2.ContinuationFrame)
		if !ok {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := r.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if r.invalid == nil {
		r.invalid = checkPseudo(b.PseudoFields())
	}
	if r.invalid != nil {
		return nil, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: r.invalid}
	}
	return b, nil
}

func (r *HeaderReader) emit(hf hpack.HeaderField) {
	if r.invalid != nil || r.block.Truncated {
		return
	}
	pseudo := strings.HasPrefix(hf.Name, ":")
	switch {
	case !httpguts.ValidHeaderFieldValue(hf.Value):
		r.invalid = fmt.Errorf("invalid value of field %q", hf.Name)
	case pseudo && r.sawRegular:
		r.invalid = fmt.Errorf("pseudo-header field %q after a regular field", hf.Name)
	case !pseudo && !validWireName(hf.Name):
		r.invalid = fmt.Errorf("invalid field name %q", hf.Name)
	}
	if r.invalid != nil {
		r.dec.SetEmitEnabled(false)
		return
	}
	size := hf.Size()
	if size > r.remain {
		r.dec.SetEmitEnabled(false)
		r.block.Truncated = true
		r.remain = 0 // any CONTINUATION after this ends the connection
		return
	}
	r.remain -= size
	r.block.Fields = append(r.block.Fields, hf)
	if pseudo {
		r.block.nPseudo++
	} else {
		r.sawRegular = true
	}
}

// validWireName reports whether a field name is a lower-case token, as
// HTTP/2 requires (RFC 9113 §8.2.1).
func validWireName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !httpguts.IsTokenRune(rune(c)) || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

var errMixedPseudo = errors.New("request and response pseudo-header fields in one block")

// checkPseudo rejects unknown and repeated pseudo-header fields, and a
// block mixing a request's with a response's.
func checkPseudo(pseudo []hpack.HeaderField) error {
	var request, response bool
	for i, hf := range pseudo {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return fmt.Errorf("unknown pseudo-header field %q", hf.Name)
		}
		for _, prev := range pseudo[:i] {
			if prev.Name == hf.Name {
				return fmt.Errorf("pseudo-header field %q repeated", hf.Name)
			}
		}
	}
	if request && response {
		return errMixedPseudo
	}
	return nil
}
