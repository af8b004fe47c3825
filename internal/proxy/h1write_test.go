package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// TestWriteBodilessHead: what writeBodilessHead writes parses (as a
// server would) to the same request as net/http's Request.Write of it,
// and what it declines goes to Request.Write.
func TestWriteBodilessHead(t *testing.T) {
	u := func(s string) *url.URL {
		t.Helper()
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name    string
		req     *http.Request
		handled bool
	}{
		{"get with query", &http.Request{Method: "GET", URL: u("http://10.0.0.1:80/a/b?x=1&y=%20"), Host: "web.default.svc:8080",
			Header: http.Header{"Accept": {"*/*"}, "X-Multi": {"one", "two"}, "User-Agent": {"curl/8"}}}, true},
		{"blank user agent is not sent", &http.Request{Method: "GET", URL: u("http://h/"), Host: "h", Header: http.Header{"User-Agent": {""}}}, true},
		{"no user agent: net/http's default", &http.Request{Method: "GET", URL: u("http://h/"), Header: http.Header{}}, true},
		{"empty method is GET", &http.Request{URL: u("http://h/x"), Header: http.Header{"User-Agent": {""}}}, true},
		{"delete has no length", &http.Request{Method: "DELETE", URL: u("http://h/x"), Host: "h", Header: http.Header{"User-Agent": {""}}}, true},
		{"bodiless post gets a zero length", &http.Request{Method: "POST", URL: u("http://h/x"), Host: "h", Header: http.Header{"User-Agent": {""}}}, true},
		{"bodiless put gets a zero length", &http.Request{Method: "PUT", URL: u("http://h/x"), Host: "h", Header: http.Header{"User-Agent": {""}}}, true},
		{"head has no length", &http.Request{Method: "HEAD", URL: u("http://h/x"), Host: "h", Header: http.Header{"User-Agent": {""}}}, true},
		{"escaped path kept", &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "h", Path: "/a b/c%2Fd", RawPath: "/a%20b/c%2Fd"}, Host: "h", Header: http.Header{"User-Agent": {""}}}, true},
		{"excluded fields", &http.Request{Method: "GET", URL: u("http://h/"), Host: "h",
			Header: http.Header{"Host": {"evil"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}, "User-Agent": {""}}}, true},
		{"newlines in values", &http.Request{Method: "GET", URL: u("http://h/"), Host: "h",
			Header: http.Header{"X-Inject": {"a\r\nX-Evil: 1"}, "User-Agent": {"b\nc"}, "X-Pad": {"  d \t"}}}, true},
		{"ipv6 host", &http.Request{Method: "GET", URL: u("http://[::1]:80/"), Header: http.Header{"User-Agent": {""}}}, true},
		{"body", &http.Request{Method: "POST", URL: u("http://h/"), Host: "h", Header: http.Header{}, Body: http.NoBody}, false},
		{"content length", &http.Request{Method: "POST", URL: u("http://h/"), Host: "h", Header: http.Header{}, ContentLength: 3}, false},
		{"close", &http.Request{Method: "GET", URL: u("http://h/"), Host: "h", Header: http.Header{}, Close: true}, false},
		{"connect", &http.Request{Method: "CONNECT", URL: &url.URL{Host: "h:443"}, Host: "h:443", Header: http.Header{}}, false},
		{"idn host", &http.Request{Method: "GET", URL: u("http://h/"), Host: "bücher.example", Header: http.Header{}}, false},
		{"host with a slash", &http.Request{Method: "GET", URL: u("http://h/"), Host: "h/x", Header: http.Header{}}, false},
		{"zone", &http.Request{Method: "GET", URL: u("http://h/"), Host: "[fe80::1%25eth0]:80", Header: http.Header{}}, false},
		{"control byte in target", &http.Request{Method: "GET", URL: &url.URL{Path: "/a", RawQuery: "x=\x01"}, Host: "h", Header: http.Header{}}, false},
		{"bad method", &http.Request{Method: "G T", URL: u("http://h/"), Host: "h", Header: http.Header{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			w := bufio.NewWriter(&got)
			handled := writeBodilessHead(w, tt.req)
			w.Flush()
			if handled != tt.handled {
				t.Fatalf("handled = %v, want %v", handled, tt.handled)
			}
			if !handled {
				if got.Len() != 0 {
					t.Fatalf("declined but wrote %q", got.String())
				}
				return
			}
			var want bytes.Buffer
			if err := tt.req.Write(&want); err != nil {
				t.Fatalf("Request.Write: %v", err)
			}
			gotS, wantS := got.String(), want.String()
			g, err := http.ReadRequest(bufio.NewReader(&got))
			if err != nil {
				t.Fatalf("parsing %q: %v", got.String(), err)
			}
			wr, err := http.ReadRequest(bufio.NewReader(&want))
			if err != nil {
				t.Fatalf("parsing net/http's %q: %v", want.String(), err)
			}
			if g.Method != wr.Method || g.RequestURI != wr.RequestURI || g.Host != wr.Host || g.ContentLength != wr.ContentLength || !reflect.DeepEqual(g.Header, wr.Header) {
				t.Errorf("wrote %q\nnet/http writes %q", gotS, wantS)
			}
		})
	}
}

// TestWriteBodilessHeadAllocs: the point of the fast path. Request.Write
// allocates for its fmt calls, transfer writer and sorted header copy.
func TestWriteBodilessHeadAllocs(t *testing.T) {
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "10.0.0.1:80", Path: "/echo", RawQuery: "size=1024"}, Host: "backend:80",
		Header: http.Header{"Accept": {"*/*"}, "User-Agent": {"fortio.org/fortio-1.66.5"}, "L5d-Client-Id": {"web.default.serviceaccount.identity.linkerd.cluster.local"}}}
	w := bufio.NewWriterSize(discard{}, 4<<10)
	// RequestURI builds path?query: one string.
	if n := testing.AllocsPerRun(100, func() { writeBodilessHead(w, req); w.Flush() }); n > 1 {
		t.Errorf("writeBodilessHead: %v allocations per request, want ≤ 1", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// A field name that is not a token (e.g. a RequestHeaderModifier name the
// policy API did not validate) is dropped, as Request.Write drops it, not
// written raw: it could inject a header.
func TestWriteBodilessHeadDropsInvalidNames(t *testing.T) {
	h := http.Header{"User-Agent": {""}}
	h.Set("X-A\r\nX-Smuggled", "1") // e.g. an unvalidated RequestHeaderModifier name from the policy API
	req := &http.Request{Method: "GET", URL: &url.URL{Scheme: "http", Host: "h", Path: "/"}, Host: "h", Header: h}
	var a, b bytes.Buffer
	w := bufio.NewWriter(&a)
	handled := writeBodilessHead(w, req)
	w.Flush()
	req.Write(&b)
	t.Logf("handled=%v\nwriteBodilessHead:\n%q\nRequest.Write:\n%q", handled, a.String(), b.String())
	if bytes.Contains(a.Bytes(), []byte("\r\nX-Smuggled")) {
		t.Errorf("writeBodilessHead wrote an invalid field name raw (header injection); Request.Write drops it")
	}
}
