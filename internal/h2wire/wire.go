// Package h2wire holds what the proxy's HTTP/2 server (h2server) and
// client (h2client) both do on the wire: a header block split into
// HEADERS and CONTINUATION frames, field names between HTTP/2's lower case
// and Go's canonical form (without an allocation for common names), and
// the windows of RFC 9113's flow control.
package h2wire

import (
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// Flow control and framing defaults of RFC 9113.
const (
	InitialWindow    = 65535 // §6.9.2: a window before SETTINGS_INITIAL_WINDOW_SIZE
	MaxWindow        = 1<<31 - 1
	DefaultFrameSize = 16384 // SETTINGS_MAX_FRAME_SIZE until the peer says otherwise
)

// WriteHeaderBlock writes block as the HEADERS frame of stream id,
// followed by CONTINUATION frames when it is over maxFrame bytes.
func WriteHeaderBlock(fr *http2.Framer, id uint32, block []byte, endStream bool, maxFrame int) error {
	first := block
	if len(first) > maxFrame {
		first = first[:maxFrame]
	}
	block = block[len(first):]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		frag := block
		if len(frag) > maxFrame {
			frag = frag[:maxFrame]
		}
		block = block[len(frag):]
		if err := fr.WriteContinuation(id, len(block) == 0, frag); err != nil {
			return err
		}
	}
	return nil
}

// ConnectionSpecific reports whether a (lower-case) field is
// connection-specific, which HTTP/2 does not carry (RFC 9113 §8.2.2): a
// message with one is malformed.
func ConnectionSpecific(lowerName string) bool {
	switch lowerName {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// commonNames are canonical names common in requests and responses.
var commonNames = []string{
	"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
	"Access-Control-Allow-Origin", "Age", "Authorization", "B3", "Cache-Control",
	"Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "Cookie",
	"Date", "Etag", "Expect", "Expires", "Forwarded", "Grpc-Accept-Encoding",
	"Grpc-Encoding", "Grpc-Message", "Grpc-Status", "Grpc-Timeout", "Host",
	"If-Modified-Since", "If-None-Match", "Last-Modified", "Link", "Location", "Origin",
	"Referer", "Server", "Set-Cookie", "Strict-Transport-Security", "Te", "Trailer",
	"Traceparent", "Tracestate", "User-Agent", "Vary", "Via", "Www-Authenticate",
	"X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Spanid", "X-B3-Traceid",
	"X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id",
}

// lowerToCanonical and canonicalToLower map commonNames between their
// two forms.
var lowerToCanonical, canonicalToLower = nameMaps()

func nameMaps() (lowerToCanonical, canonicalToLower map[string]string) {
	lowerToCanonical = make(map[string]string, len(commonNames))
	canonicalToLower = make(map[string]string, len(commonNames))
	for _, k := range commonNames {
		lk := strings.ToLower(k)
		lowerToCanonical[lk] = k
		canonicalToLower[k] = lk
	}
	return lowerToCanonical, canonicalToLower
}

// CommonLower is the lower case of a common canonical name; false for
// others.
func CommonLower(k string) (string, bool) {
	lk, ok := canonicalToLower[k]
	return lk, ok
}

// LowerName is a field name as HTTP/2 sends it: lower case; false for a
// name that is not a valid token.
func LowerName(k string) (string, bool) {
	if lk, ok := canonicalToLower[k]; ok {
		return lk, true
	}
	if !httpguts.ValidHeaderFieldName(k) {
		return "", false
	}
	return strings.ToLower(k), true
}

// maxCanonCache bounds a Canon's cache of names that are not common.
const maxCanonCache = 256

// Canon turns the lower-case field names a connection receives into
// their canonical form: common names without an allocation, others
// cached per connection (net/http's HTTP/2 code does the same). The zero
// value is ready; it is not safe for concurrent use.
type Canon struct{ cache map[string]string }

// Canonical is name's canonical form.
func (c *Canon) Canonical(name string) string {
	if k, ok := lowerToCanonical[name]; ok {
		return k
	}
	if k, ok := c.cache[name]; ok {
		return k
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	if c.cache == nil {
		c.cache = map[string]string{}
	}
	if len(c.cache) < maxCanonCache {
		c.cache[name] = k
	}
	return k
}

// RecvWindow is a receive window: the credit a peer has for DATA (on a
// stream or on a connection), and what was consumed and not yet given
// back. The zero value is a window of 0; its owner guards it.
type RecvWindow struct {
	avail   int64
	unacked int64
}

// NewRecvWindow is a window of size.
func NewRecvWindow(size int64) RecvWindow { return RecvWindow{avail: size} }

// Take uses n bytes of credit for DATA received; false when the peer
// sent more than it had (a flow-control error).
func (w *RecvWindow) Take(n int64) bool {
	if n > w.avail {
		return false
	}
	w.avail -= n
	return true
}

// Return gives back n bytes consumed and returns the increment of the
// WINDOW_UPDATE to send: 0 until half of size is owed, so that updates
// go out in few frames.
func (w *RecvWindow) Return(n, size int64) int64 {
	w.unacked += n
	if w.unacked < size/2 {
		return 0
	}
	inc := w.unacked
	w.avail += inc
	w.unacked = 0
	return inc
}
