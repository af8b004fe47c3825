package proxy

import (
	"bufio"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeBodilessHead writes the head of a request without a body the way
// net/http's Request.Write does (request line, Host, User-Agent unless
// blank, Content-Length: 0 for POST, PUT and PATCH, then the
// headers with newlines in values turned to spaces), without its
// fmt.Fprintf calls, transfer writer and sorted copy of the header: at max
// rate those were ~3 % of a proxy's CPU (issue 17). Header fields go out in
// map order; the values of one field keep theirs. It reports false,
// having written nothing, for anything it does not handle (a body, a
// trailer, CONNECT, a host or target net/http would rewrite or refuse):
// those take Request.Write.
func writeBodilessHead(w *bufio.Writer, req *http.Request) bool {
	if req.Body != nil || req.ContentLength != 0 || len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 || req.Close {
		return false
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if method == http.MethodConnect || !plainToken(method) {
		return false
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !plainHost(host) {
		return false
	}
	// The target as URL.RequestURI builds it, written in parts rather
	// than concatenated (an allocation per request with a query).
	var uri, query string
	if u := req.URL; u.Opaque == "" && !u.ForceQuery && u.RawQuery != "" {
		if uri = u.EscapedPath(); uri == "" {
			uri = "/"
		}
		query = u.RawQuery
	} else {
		uri = u.RequestURI()
	}
	if !plainTarget(uri) || query != "" && !plainTarget(query) {
		return false
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(uri)
	if query != "" {
		w.WriteByte('?')
		w.WriteString(query)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	ua := "Go-http-client/1.1" // net/http's default, sent when the header is absent
	if _, ok := req.Header["User-Agent"]; ok {
		ua = req.Header.Get("User-Agent")
	}
	if ua != "" {
		writeField(w, "User-Agent", ua)
	}
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		// Many servers expect a length for these (net/http sends it too).
		w.WriteString("Content-Length: 0\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // written above or meaningless without a body
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // dropped, as Header.Write drops it
		}
		for _, v := range vv {
			writeField(w, k, v)
		}
	}
	w.WriteString("\r\n")
	return true
}

// writeField writes one header line, its value cleaned as net/http's
// Header.Write does: CR and LF become spaces, surrounding blanks go.
func writeField(w *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = headerNewlines.Replace(v)
	}
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(textproto.TrimString(v))
	w.WriteString("\r\n")
}

var headerNewlines = strings.NewReplacer("\n", " ", "\r", " ")

// plainToken: a method of token characters (RFC 9110 §5.6.2).
func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

// plainHost: a host[:port] net/http would send unchanged (ASCII letters,
// digits, '.', '-', '_', ':' and IPv6 brackets; no zone, no IDN).
func plainHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

// plainTarget: a request target with no control bytes or spaces.
func plainTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return s != ""
}
