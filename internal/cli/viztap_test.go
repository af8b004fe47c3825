package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/viz/tapapi"
)

func TestTopTable(t *testing.T) {
	tt := newTopTable()
	req := func(id, src, path string, lat time.Duration, end *tapapi.ResponseEnd) {
		tt.add(tapapi.Event{ID: id, Source: src + ":5000", Destination: "198.18.0.9:80", RequestInit: &tapapi.RequestInit{Method: "GET", Path: path}})
		if lat > 0 {
			tt.add(tapapi.Event{ID: id, ResponseIn: &tapapi.ResponseInit{HTTPStatus: 200, SinceRequestInit: lat}})
		}
		tt.add(tapapi.Event{ID: id, ResponseEnd: end})
	}
	failed := uint32(14)
	req("0:1", "198.18.0.5", "/a?x=1", 3*time.Millisecond, &tapapi.ResponseEnd{})
	req("0:2", "198.18.0.5", "/a?x=2", 1*time.Millisecond, &tapapi.ResponseEnd{})
	req("0:3", "198.18.0.5", "/a", 2*time.Millisecond, &tapapi.ResponseEnd{GRPCStatus: &failed})
	req("1:1", "198.18.0.6", "/b", 0, &tapapi.ResponseEnd{SinceRequestInit: 1500 * time.Millisecond, Error: "no response"})
	var b strings.Builder
	tt.write(&b)
	got := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"Source", "Destination", "Method", "Path", "Count", "Best", "Worst", "Last", "Success", "Rate"},
		{"198.18.0.5", "198.18.0.9", "GET", "/a", "3", "1ms", "3ms", "2ms", "66.67%"},
		{"198.18.0.6", "198.18.0.9", "GET", "/b", "1", "1.5s", "1.5s", "1.5s", "0.00%"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), b.String())
	}
	for i := range want {
		if f := strings.Fields(got[i]); strings.Join(f, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d: got %q, want %q", i, f, want[i])
		}
	}
}

func TestTapEventLine(t *testing.T) {
	ok := uint32(0)
	base := tapapi.Event{ID: "0:1", Direction: "INBOUND", Source: "198.18.0.5:4000", Destination: "198.18.0.9:80", TLS: true}
	for _, tc := range []struct {
		ev   func(e *tapapi.Event)
		want string
	}{
		{func(e *tapapi.Event) {
			e.RequestInit = &tapapi.RequestInit{Method: "GET", Authority: "web.shop:80", Path: "/x"}
		}, "req id=0:1 proxy=in  src=198.18.0.5:4000 dst=198.18.0.9:80 tls=true :method=GET :authority=web.shop:80 :path=/x"},
		{func(e *tapapi.Event) {
			e.Direction, e.TLS = "OUTBOUND", false
			e.ResponseIn = &tapapi.ResponseInit{HTTPStatus: 503, SinceRequestInit: 1234 * time.Microsecond}
		}, "rsp id=0:1 proxy=out src=198.18.0.5:4000 dst=198.18.0.9:80 tls=no_identity :status=503 latency=1234µs"},
		{func(e *tapapi.Event) {
			e.ResponseEnd = &tapapi.ResponseEnd{SinceResponseInit: 41 * time.Microsecond, ResponseBytes: 560, GRPCStatus: &ok}
		}, "end id=0:1 proxy=in  src=198.18.0.5:4000 dst=198.18.0.9:80 tls=true grpc-status=OK duration=41µs response-length=560B"},
	} {
		e := base
		tc.ev(&e)
		if got := e.Line(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestTapFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events int
		errs   []string
		want   string
	}{
		{"no failure", 3, nil, ""},
		{"every pod, nothing seen", 0, []string{"pod shop/a: refused", "pod shop/b: EOF"}, "tap failed on every pod (2): pod shop/a: refused; pod shop/b: EOF"},
		{"after events", 7, []string{"pod shop/a: EOF"}, "tap ended after 7 events: every pod's tap failed (1): pod shop/a: EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tapFailures{events: tc.events}
			for _, e := range tc.errs {
				f.add(e)
			}
			got := ""
			if err := f.err(); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
