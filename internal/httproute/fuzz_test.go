package httproute

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/route"
)

// FuzzMatch compiles arbitrary patterns and matches arbitrary requests:
// Compile either fails cleanly or yields a table whose Match always
// returns a rule, and a segment-wise prefix never matches a path that
// only shares characters with it.
func FuzzMatch(f *testing.F) {
	f.Add("/api", "/api/v1", "x-a", "v", "a.*", "q", "1", "GET")
	f.Add("/", "", "", "", "(", "", "", "")
	f.Add("/a/", "/a", "X-A", "\x00", "[a-z]+", "k", "v", "POST")
	f.Fuzz(func(t *testing.T, prefix, reqPath, hname, hval, regex, qname, qval, method string) {
		tbl := &route.Table{HTTP: []route.HTTPRoute{
			one("prefix", 0, route.HTTPMatch{Path: &route.PathMatch{Kind: route.PathPrefix, Value: prefix}}),
			one("regex", 1, route.HTTPMatch{Path: &route.PathMatch{Kind: route.PathRegex, Value: regex},
				Headers: []route.ValueMatch{{Name: hname, Value: hval}}, Query: []route.ValueMatch{{Name: qname, Value: qval}}, Method: method}),
		}, GRPC: []route.GRPCRoute{{Meta: meta("g", 0), Rules: []route.GRPCRule{{Matches: []route.GRPCMatch{{Service: regex, Regex: true}}}}}}}
		ct, err := Compile(tbl)
		if err != nil {
			return
		}
		r := &http.Request{Method: method, Host: hval, URL: &url.URL{Path: reqPath, RawQuery: qname + "=" + qval},
			Header: http.Header{http.CanonicalHeaderKey(hname): {hval}, "Content-Type": {"application/grpc"}}}
		m := ct.Match(r)
		if m.Rule == nil {
			t.Fatal("no rule")
		}
		if m.Rule.Meta.Name == "prefix" {
			p := strings.TrimRight(prefix, "/")
			if p != "" && reqPath != p && !strings.HasPrefix(reqPath, p+"/") {
				t.Fatalf("prefix %q matched path %q", prefix, reqPath)
			}
			_ = ModifyPath(reqPath, &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: hval}, m.Prefix)
		}
		_, _ = RedirectLocation(r, &route.Redirect{Hostname: hval, Path: &route.PathModifier{Kind: route.ReplaceFullPath, Value: reqPath}}, m.Prefix)
	})
}
