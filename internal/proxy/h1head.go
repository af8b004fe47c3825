package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/weftmesh/weft/internal/compat"
	"golang.org/x/net/http/httpguts"
)

// A strict parser for the HTTP/1.1 heads the proxy sees on nearly every
// request (issue 17): net/http's ReadRequest and ReadResponse allocate a
// string per line and per value, a reader per body and more; at 1,000
// requests a second through a pair they were ~40 % of the proxies'
// allocations. parseRequestHead and parseResponseHead accept only the
// plain common form and build exactly what net/http would from it (the
// tests compare the two on every input they accept); anything else makes
// them decline, and the caller parses the same bytes with net/http as
// before. The head is copied once into a string; keys and values are
// slices of it.

// headLine is one header field of a head, as offsets into its string.
type headLine struct {
	k0, k1, v0, v1 int
	canon          bool // the key is already in canonical form
}

// maxFastFields bounds the fields of a head the fast path takes; a head
// with more goes to net/http.
const maxFastFields = 32

// headFields parses the field lines of head from off (just after the
// start line) to its empty line. Strict: CRLF line ends, no folding, keys
// of token characters followed directly by ':', values of visible ASCII,
// spaces and tabs.
func headFields(head []byte, off int, lines *[maxFastFields]headLine) (int, bool) {
	n := 0
	for {
		if off+1 >= len(head) {
			return 0, false
		}
		if head[off] == '\r' {
			return n, head[off+1] == '\n' && off+2 == len(head)
		}
		if n == maxFastFields {
			return 0, false
		}
		l := &lines[n]
		l.k0, l.canon = off, true
		upper := true
		for ; off < len(head) && head[off] != ':'; off++ {
			b := head[off]
			if !tokenByte[b] {
				return 0, false
			}
			if upper && 'a' <= b && b <= 'z' || !upper && 'A' <= b && b <= 'Z' {
				l.canon = false
			}
			upper = b == '-'
		}
		if off == l.k0 || off == len(head) {
			return 0, false
		}
		l.k1 = off
		off++
		for off < len(head) && (head[off] == ' ' || head[off] == '\t') {
			off++
		}
		l.v0 = off
		for ; off < len(head) && head[off] != '\r'; off++ {
			if b := head[off]; b < ' ' && b != '\t' || b > '~' {
				return 0, false
			}
		}
		if off+1 >= len(head) || head[off+1] != '\n' {
			return 0, false
		}
		l.v1 = off
		for l.v1 > l.v0 && (head[l.v1-1] == ' ' || head[l.v1-1] == '\t') {
			l.v1--
		}
		off += 2
		n++
	}
}

// tokenByte: the characters of an RFC 9110 token.
var tokenByte = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd is the set of ASCII letters and digits and extra's bytes.
func alnumAnd(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

// commonKeys interns the canonical form of keys often sent in another
// case, so canonicalizing them allocates nothing.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Date", "Etag", "Host",
		"Last-Modified", "Location", "Server", "Set-Cookie", "User-Agent", "Vary", "Via",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id", "Traceparent", "Tracestate",
		compat.HeaderDstOverride, compat.HeaderClientID, compat.HeaderRequireID,
		compat.HeaderProxyError, compat.HeaderRemoteIP, compat.HeaderServerID,
		compat.HeaderDstCanonical, compat.HeaderOrigProto,
	} {
		k = http.CanonicalHeaderKey(k)
		m[k] = k
	}
	return m
}()

// fastHead is what the fields of a head say about its message.
type fastHead struct {
	header http.Header
	host   string
	hosts  int
	length int64 // -1: no Content-Length
}

// buildHeader makes the header of a parsed head as textproto does (one
// backing array for single values), keeping Host apart. ok false when a
// field needs net/http: Transfer-Encoding, Trailer, Pragma, Expect,
// Upgrade, a Connection other than keep-alive, or a Content-Length that
// is not one plain number.
func buildHeader(s string, lines []headLine) (fastHead, bool) {
	h := fastHead{header: make(http.Header, len(lines)), length: -1}
	strs := make([]string, len(lines))
	var canon [64]byte
	for i := range lines {
		l := &lines[i]
		var key string
		switch {
		case l.canon:
			key = s[l.k0:l.k1]
		case l.k1-l.k0 <= len(canon):
			c := canon[:l.k1-l.k0]
			upper := true
			for j := range c {
				b := s[l.k0+j]
				if upper && 'a' <= b && b <= 'z' {
					b -= 'a' - 'A'
				} else if !upper && 'A' <= b && b <= 'Z' {
					b += 'a' - 'A'
				}
				c[j] = b
				upper = b == '-'
			}
			if k, ok := commonKeys[string(c)]; ok {
				key = k
			} else {
				key = string(c)
			}
		default:
			key = http.CanonicalHeaderKey(s[l.k0:l.k1])
		}
		value := s[l.v0:l.v1]
		switch key {
		case "Host":
			h.host, h.hosts = value, h.hosts+1
			continue // ReadRequest moves it to Request.Host
		case "Transfer-Encoding", "Trailer", "Pragma", "Expect", "Upgrade":
			return h, false
		case "Connection":
			if !asciiEqualFold(value, "keep-alive") {
				return h, false
			}
		case "Content-Length":
			if h.length >= 0 || len(value) == 0 || len(value) > 18 {
				return h, false
			}
			var n int64
			for j := 0; j < len(value); j++ {
				if value[j] < '0' || value[j] > '9' {
					return h, false
				}
				n = n*10 + int64(value[j]-'0')
			}
			h.length = n
		}
		if vv := h.header[key]; vv != nil {
			h.header[key] = append(vv, value)
		} else {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = value
			h.header[key] = vv
		}
	}
	return h, true
}

func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// parseRequestHead parses head, a complete request head (its empty line
// included), into a copy of tmpl (which carries the connection's context
// and remote address) when it is a plain HTTP/1.1 request that serveH1
// serves itself: origin-form target, exactly one valid Host, no body or
// one of Content-Length bytes (read from br). ok false: parse it with
// http.ReadRequest.
func parseRequestHead(head []byte, tmpl *http.Request, br *bufio.Reader) (*http.Request, bool) {
	sp := 0
	for sp < len(head) && tokenByte[head[sp]] {
		sp++
	}
	if sp == 0 || sp == len(head) || head[sp] != ' ' {
		return nil, false
	}
	t0 := sp + 1
	if t0 >= len(head) || head[t0] != '/' {
		return nil, false
	}
	t1 := t0
	for t1 < len(head) && head[t1] > ' ' && head[t1] <= '~' {
		t1++
	}
	const proto = " HTTP/1.1\r\n"
	if len(head)-t1 < len(proto) || string(head[t1:t1+len(proto)]) != proto {
		return nil, false
	}
	var lines [maxFastFields]headLine
	nl, ok := headFields(head, t1+len(proto), &lines)
	if !ok {
		return nil, false
	}
	s := string(head)
	method := s[:sp]
	if method == http.MethodConnect || method == "PRI" {
		return nil, false
	}
	h, ok := buildHeader(s, lines[:nl])
	if !ok || h.hosts != 1 || !httpguts.ValidHostHeader(h.host) {
		return nil, false
	}
	m := new(struct {
		req  http.Request
		url  url.URL
		body lenBody
	}) // one allocation for the three
	u := &m.url
	if !requestURL(u, s[t0:t1]) {
		var err error
		if u, err = url.ParseRequestURI(s[t0:t1]); err != nil {
			return nil, false
		}
	}
	req := &m.req
	*req = *tmpl
	req.Method, req.URL, req.RequestURI = method, u, s[t0:t1]
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	req.Header, req.Host = h.header, h.host
	req.Body, req.ContentLength = http.NoBody, 0
	if h.length > 0 {
		m.body = lenBody{r: br, n: h.length}
		req.Body, req.ContentLength = &m.body, h.length
	}
	return req, true
}

// requestURL sets u to what url.ParseRequestURI gives for target, an
// origin-form request target, when its path has only characters that
// need no escaping (so no RawPath); the query is kept raw, as
// url.ParseRequestURI keeps it. false: not that form.
func requestURL(u *url.URL, target string) bool {
	path, query, hasQuery := strings.Cut(target, "?")
	if path == "" || path[0] != '/' {
		return false
	}
	for i := 0; i < len(path); i++ {
		if !pathByte[path[i]] {
			return false
		}
	}
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
	return true
}

// pathByte: the bytes a URL path keeps unescaped (net/url's shouldEscape
// in its path mode).
var pathByte = alnumAnd("-._~$&+,/:;=@")

// parseResponseHead parses head, a complete response head, when it is a
// plain HTTP/1.1 response to a request other than HEAD, with a final
// status that has a body (not 1xx, 204 or 304) of Content-Length bytes
// (read from br). ok false: parse it with http.ReadResponse.
func parseResponseHead(head []byte, req *http.Request, br *bufio.Reader) (*http.Response, bool) {
	const proto = "HTTP/1.1 "
	if req.Method == http.MethodHead || len(head) < len(proto)+5 || string(head[:len(proto)]) != proto {
		return nil, false
	}
	code := 0
	for i := len(proto); i < len(proto)+3; i++ {
		if head[i] < '0' || head[i] > '9' {
			return nil, false
		}
		code = code*10 + int(head[i]-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	end := len(proto) + 3
	if head[end] == ' ' {
		for end++; end < len(head) && head[end] != '\r'; end++ {
			if b := head[end]; b < ' ' && b != '\t' || b > '~' {
				return nil, false
			}
		}
	}
	if end+1 >= len(head) || head[end] != '\r' || head[end+1] != '\n' {
		return nil, false
	}
	var lines [maxFastFields]headLine
	nl, ok := headFields(head, end+2, &lines)
	if !ok {
		return nil, false
	}
	s := string(head)
	h, ok := buildHeader(s, lines[:nl])
	if !ok || h.hosts > 0 || h.length < 0 {
		return nil, false // a Host field (kept in a response), or no length
	}
	m := new(struct {
		resp http.Response
		body lenBody
	}) // one allocation for both
	m.resp = http.Response{
		Status: s[len(proto):end], StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h.header, Body: http.NoBody, ContentLength: h.length, Request: req,
	}
	if h.length > 0 {
		m.body = lenBody{r: br, n: h.length}
		m.resp.Body = &m.body
	}
	return &m.resp, true
}

// lenBody reads a body of n bytes, as net/http's body over a LimitReader:
// io.EOF with its last bytes, io.ErrUnexpectedEOF when the connection
// ends before them. Close does nothing (serveH1 and h1Body decide what
// becomes of the rest).
type lenBody struct {
	r *bufio.Reader
	n int64
}

func (b *lenBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	case err == nil && b.n == 0:
		return n, io.EOF
	}
	return n, err
}

func (b *lenBody) Close() error { return nil }
