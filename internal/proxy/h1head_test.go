package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// h1HeadCases are request and response heads (with what follows them),
// the common forms and the ones the fast parsers must leave to net/http.
var h1HeadRequests = []struct {
	raw  string
	fast bool // the fast parser takes it
}{
	{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /echo?size=1024 HTTP/1.1\r\nHost: web.test\r\nUser-Agent: fortio.org/fortio-1.66.5\r\n\r\n", true},
	{"GET /a/b%20c?x=1&y=%2F HTTP/1.1\r\nhost: a:80\r\naccept: */*\r\nx-custom-HEADER:  v  \r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n", true},
	{"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", true},
	{"PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", true},
	{"DELETE /p HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n", true},
	{"GET /p HTTP/1.1\r\nHost: a\r\nl5d-dst-override: web.ns.svc.cluster.local:80\r\nl5d-client-id: x.ns.serviceaccount.identity.linkerd.cluster.local\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n", true},
	{"GET /p HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n", true},
	{"get /p HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET //x/y HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /" + strings.Repeat("k", 100) + " HTTP/1.1\r\nHost: a\r\nX-" + strings.Repeat("long", 30) + ": v\r\n\r\n", true},
	{"GET /p#frag HTTP/1.1\r\nHost: a\r\n\r\n", true},
	// Request targets: ForceQuery, a query with "?" or "#" in it, paths
	// with characters net/url keeps or escapes (RawPath).
	{"GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /a?? HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /a?b?c#d HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /~u/x;y=1,z@h:1$&+=-._ HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p!x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p*x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p'x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p(x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p)x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p\"x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p<x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p{x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p|x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p^x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p`x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p\\x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p[x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /p]x HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /a%2Fb?c HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", false},
	// net/http's.
	{"GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
	{"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", false},
	{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
	{"GET / HTTP/1.1\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false},
	{"GET / HTTP/1.1\nHost: a\n\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nX\x01: 1\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", false},
	{"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", false},
	{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", false},
	{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", false},
	{"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n", false},
	{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", false},
	{" GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", false},
}

var h1HeadResponses = []struct {
	method, raw string
	fast        bool
}{
	{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true},
	{"GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Tue, 01 Dec 2026 18:00:00 GMT\r\nContent-Length: 3\r\n\r\nabc", true},
	{"POST", "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n", true},
	{"GET", "HTTP/1.1 503\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx", true},
	{"GET", "HTTP/1.1 299 whatever  \r\nContent-Length: 1\r\nl5d-proxy-error: x\r\n\r\nx", true},
	{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true}, // cut short: ErrUnexpectedEOF from both
	// net/http's.
	{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false},
	{"GET", "HTTP/1.1 204 No Content\r\n\r\n", false},
	{"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false},
	{"GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"GET", "HTTP/1.1 200 OK\r\n\r\nuntil close", false},
	{"GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false},
	{"GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"GET", "HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"GET", "HTTP/1.1 20 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"GET", "HTTP/1.1 200 OK\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", false},
	{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"GET", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\nx", false},
}

// TestFastRequestHeadAsNetHTTP: the fast parser takes exactly the heads
// expected, and builds from them what http.ReadRequest builds.
func TestFastRequestHeadAsNetHTTP(t *testing.T) {
	for _, tc := range h1HeadRequests {
		if got := checkFastRequest(t, []byte(tc.raw)); got != tc.fast {
			t.Errorf("%q: fast %v, want %v", tc.raw, got, tc.fast)
		}
	}
}

// TestFastResponseHeadAsNetHTTP: the same for responses.
func TestFastResponseHeadAsNetHTTP(t *testing.T) {
	for _, tc := range h1HeadResponses {
		if got := checkFastResponse(t, tc.method, []byte(tc.raw)); got != tc.fast {
			t.Errorf("%s %q: fast %v, want %v", tc.method, tc.raw, got, tc.fast)
		}
	}
}

func FuzzFastRequestHead(f *testing.F) {
	for _, tc := range h1HeadRequests {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkFastRequest(t, raw) })
}

func FuzzFastResponseHead(f *testing.F) {
	for _, tc := range h1HeadResponses {
		f.Add(tc.method == "HEAD", []byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, head bool, raw []byte) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		checkFastResponse(t, method, raw)
	})
}

// checkFastRequest parses raw's head both ways; when the fast parser
// takes it, every field and the body must equal net/http's, and serveH1
// must consider it usual. It reports whether the fast parser took it.
func checkFastRequest(t *testing.T, raw []byte) bool {
	t.Helper()
	n := headLen(raw)
	if n == 0 {
		return false
	}
	tmpl := &http.Request{RemoteAddr: "192.0.2.1:5"}
	fbr := bufio.NewReader(bytes.NewReader(raw[n:]))
	got, ok := parseRequestHead(raw[:n], tmpl, fbr)
	if !ok {
		return false
	}
	want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("%q: fast parser took what net/http refuses: %v", raw, err)
	}
	c := &h1SrvConn{head: raw[:n]}
	if !c.usual(want) {
		t.Errorf("%q: fast parser took what serveH1 hands to net/http", raw)
	}
	if got.RemoteAddr != tmpl.RemoteAddr {
		t.Errorf("%q: RemoteAddr %q, want the template's", raw, got.RemoteAddr)
	}
	got.RemoteAddr = ""
	type fields struct {
		Method, RequestURI, Proto, Host string
		ProtoMajor, ProtoMinor          int
		URL                             any
		Header, Trailer                 http.Header
		ContentLength                   int64
		TransferEncoding                []string
		Close                           bool
		NoBody                          bool
	}
	view := func(r *http.Request) fields {
		return fields{r.Method, r.RequestURI, r.Proto, r.Host, r.ProtoMajor, r.ProtoMinor, *r.URL, r.Header, r.Trailer, r.ContentLength, r.TransferEncoding, r.Close, r.Body == http.NoBody}
	}
	sameParse(t, raw, view(got), view(want), got.Body, want.Body)
	return true
}

// sameParse: the fast parser's view of raw and its body must be net/http's.
func sameParse(t *testing.T, raw []byte, got, want any, gotBody, wantBody io.Reader) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q:\n got %+v\nwant %+v", raw, got, want)
	}
	gb, gerr := io.ReadAll(gotBody)
	wb, werr := io.ReadAll(wantBody)
	if !bytes.Equal(gb, wb) || (gerr == nil) != (werr == nil) {
		t.Errorf("%q: body %q (%v), want %q (%v)", raw, gb, gerr, wb, werr)
	}
}

// checkFastResponse is checkFastRequest for a response to method.
func checkFastResponse(t *testing.T, method string, raw []byte) bool {
	t.Helper()
	n := headLen(raw)
	if n == 0 {
		return false
	}
	req := &http.Request{Method: method}
	got, ok := parseResponseHead(raw[:n], req, bufio.NewReader(bytes.NewReader(raw[n:])))
	if !ok {
		return false
	}
	want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
	if err != nil {
		t.Fatalf("%q: fast parser took what net/http refuses: %v", raw, err)
	}
	type fields struct {
		Status, Proto                      string
		StatusCode, ProtoMajor, ProtoMinor int
		Header, Trailer                    http.Header
		ContentLength                      int64
		TransferEncoding                   []string
		Close, Uncompressed                bool
		Request                            *http.Request
		NoBody                             bool
	}
	view := func(r *http.Response) fields {
		return fields{r.Status, r.Proto, r.StatusCode, r.ProtoMajor, r.ProtoMinor, r.Header, r.Trailer, r.ContentLength, r.TransferEncoding, r.Close, r.Uncompressed, r.Request, r.Body == http.NoBody}
	}
	sameParse(t, raw, view(got), view(want), got.Body, want.Body)
	return true
}
