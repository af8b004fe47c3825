package httproute

import (
	"net/http"
	"testing"

	"github.com/weftmesh/weft/internal/route"
)

func TestModifyPath(t *testing.T) {
	full := func(v string) *route.PathModifier { return &route.PathModifier{Kind: route.ReplaceFullPath, Value: v} }
	pre := func(v string) *route.PathModifier {
		return &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: v}
	}
	tests := []struct {
		path   string
		m      *route.PathModifier
		prefix string
		want   string
	}{
		{"/foo/bar", full("/x"), "/foo", "/x"},
		{"/foo/bar", pre("/xyz"), "/foo", "/xyz/bar"},
		{"/foo/bar", pre("/xyz/"), "/foo/", "/xyz/bar"},
		{"/foo", pre("/xyz"), "/foo", "/xyz"},
		{"/foo/bar", pre("/"), "/foo", "/bar"},
		{"/foo", pre("/"), "/foo", "/"},
		{"/foo/bar", pre("/v2"), "/", "/v2/foo/bar"},
		{"/foo/bar", pre("/x"), "", "/foo/bar"},
		{"/foo/bar", nil, "/foo", "/foo/bar"},
	}
	for _, tt := range tests {
		if got := ModifyPath(tt.path, tt.m, tt.prefix); got != tt.want {
			t.Errorf("ModifyPath(%q, %+v, %q) = %q, want %q", tt.path, tt.m, tt.prefix, got, tt.want)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	tests := []struct {
		host, target string
		rd           route.Redirect
		prefix       string
		want         string
		status       int
	}{
		{"web.ns:8080", "/a?x=1", route.Redirect{}, "", "http://web.ns:8080/a?x=1", 302},
		{"web.ns:8080", "/a", route.Redirect{Scheme: "https", StatusCode: 301}, "", "https://web.ns/a", 301},
		{"web.ns:80", "/a", route.Redirect{Hostname: "other.ns"}, "", "http://other.ns/a", 302},
		{"web.ns:8080", "/a", route.Redirect{Hostname: "other.ns", Port: 9090}, "", "http://other.ns:9090/a", 302},
		{"web.ns", "/old/page", route.Redirect{Path: &route.PathModifier{Kind: route.ReplacePrefixMatch, Value: "/new"}}, "/old", "http://web.ns/new/page", 302},
		{"web.ns", "/x", route.Redirect{Scheme: "https", Port: 443}, "", "https://web.ns/x", 302},
	}
	for _, tt := range tests {
		r := req("GET", tt.target)
		r.Host = tt.host
		got, status := RedirectLocation(r, &tt.rd, tt.prefix)
		if got != tt.want || status != tt.status {
			t.Errorf("%s%s %+v: %q %d, want %q %d", tt.host, tt.target, tt.rd, got, status, tt.want, tt.status)
		}
	}
}

func TestModifyHeaders(t *testing.T) {
	h := http.Header{"X-A": {"1"}, "X-B": {"2"}, "X-Gone": {"3"}}
	ModifyHeaders(h, &route.HeaderModifier{
		Set:    []route.Header{{Name: "x-a", Value: "one"}},
		Add:    []route.Header{{Name: "x-b", Value: "two"}},
		Remove: []string{"x-gone"},
	})
	want := http.Header{"X-A": {"one"}, "X-B": {"2", "two"}}
	if len(h) != len(want) || h.Get("X-A") != "one" || len(h.Values("X-B")) != 2 || h.Get("X-Gone") != "" {
		t.Errorf("headers = %v, want %v", h, want)
	}
}
