package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAddForwardedFor(t *testing.T) {
	tests := []struct {
		name          string
		remote        string
		xff, fwd      []string
		wantXFF, want string
	}{
		{"first hop", "198.18.1.7:40000", nil, nil, "198.18.1.7", "for=198.18.1.7"},
		{"after an ingress", "198.18.1.7:40000", []string{"203.0.113.9"}, []string{"for=203.0.113.9;proto=https"},
			"203.0.113.9, 198.18.1.7", "for=203.0.113.9;proto=https, for=198.18.1.7"},
		{"repeated fields joined", "198.18.1.7:1", []string{"203.0.113.9", "198.51.100.2"}, nil,
			"203.0.113.9, 198.51.100.2, 198.18.1.7", "for=198.18.1.7"},
		{"IPv6 quoted", "[fd57:5746::1]:40000", nil, nil, "fd57:5746::1", `for="[fd57:5746::1]"`},
		{"IPv4-mapped", "[::ffff:198.18.1.7]:40000", nil, nil, "198.18.1.7", "for=198.18.1.7"},
		{"no IP peer", "pipe", []string{"203.0.113.9"}, nil, "203.0.113.9", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No connection, a new one, the same one again (its values
			// kept), and one whose kept values are another client's
			// (httptest's 192.0.2.1).
			kept, other := new(connInfo), new(connInfo)
			addForwardedFor(httptest.NewRequest(http.MethodGet, "/", nil), other)
			for i, info := range []*connInfo{nil, kept, kept, other} {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.RemoteAddr = tt.remote
				r.Header["X-Forwarded-For"] = append([]string(nil), tt.xff...)
				r.Header["Forwarded"] = append([]string(nil), tt.fwd...)
				addForwardedFor(r, info)
				if got := r.Header.Get("X-Forwarded-For"); got != tt.wantXFF {
					t.Errorf("case %d: X-Forwarded-For = %q, want %q", i, got, tt.wantXFF)
				}
				if got := r.Header.Get("Forwarded"); got != tt.want {
					t.Errorf("case %d: Forwarded = %q, want %q", i, got, tt.want)
				}
			}
		})
	}
}

// TestAddForwardedForAllocs: on a connection's later requests the values
// are not formatted again; the first hop's two share one allocation.
func TestAddForwardedForAllocs(t *testing.T) {
	info := new(connInfo)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "198.18.1.7:40000"
	n := testing.AllocsPerRun(100, func() {
		delete(r.Header, "X-Forwarded-For")
		delete(r.Header, "Forwarded")
		addForwardedFor(r, info)
	})
	if n > 1 {
		t.Errorf("%v allocations per request, want at most 1", n)
	}
	// Appending to one of the two values must not change the other.
	r.Header.Add("X-Forwarded-For", "198.51.100.2")
	if got, want := r.Header.Values("Forwarded"), []string{"for=198.18.1.7"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("Forwarded = %q after an X-Forwarded-For was added, want %q", got, want)
	}
}

// TestInboundAddsForwardedHeaders: the app's own view of a request that
// crossed the inbound proxy, which kept an earlier hop's X-Forwarded-For.
func TestInboundAddsForwardedHeaders(t *testing.T) {
	seen := make(chan http.Header, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() }))
	defer app.Close()
	p := startProxy(t, func(c *Config) { c.InboundForward = app.Listener.Addr().String() })
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.inbound+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-seen
	if got, want := h.Get("X-Forwarded-For"), "203.0.113.9, 127.0.0.1"; got != want {
		t.Errorf("the app saw X-Forwarded-For %q, want %q", got, want)
	}
	if got, want := h.Get("Forwarded"), "for=127.0.0.1"; got != want {
		t.Errorf("the app saw Forwarded %q, want %q", got, want)
	}
}
