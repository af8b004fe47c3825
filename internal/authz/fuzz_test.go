package authz

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzNetwork: parsing never panics; a parsed network contains an address
// exactly when its CIDR does and no exception does; a denied address is
// never admitted by an authorization over that network.
func FuzzNetwork(f *testing.F) {
	f.Add("198.18.0.0/16", "198.18.3.0/24", "198.18.3.4")
	f.Add("fd00::/8", "", "fd00::1")
	f.Add("0.0.0.0/0", "::/0", "::ffff:1.2.3.4")
	f.Add("1.2.3.4", "1.2.3.4/32", "1.2.3.4")
	f.Add("::ffff:1.2.3.0/120", "", "1.2.3.4")
	f.Add("not-a-cidr", "", "")
	f.Fuzz(func(t *testing.T, cidr, except, addr string) {
		var ex []string
		if except != "" {
			ex = strings.Split(except, ",")
		}
		n, err := ParseNetwork(cidr, ex...)
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		want := n.CIDR.Contains(a.Unmap())
		for _, e := range n.Except {
			if e.Contains(a.Unmap()) {
				want = false
			}
		}
		if got := n.Contains(a); got != want {
			t.Fatalf("%v.Contains(%v) = %v, want %v", n, a, got, want)
		}
		authz := Authorization{Networks: []Network{n}, Authn: Unauthenticated}
		if authz.Admits(Client{Addr: a}) != want {
			t.Fatalf("authorization over %v disagrees with Contains for %v", n, a)
		}
	})
}

// FuzzIdentity: a valid pattern admits the identities it names and only
// them; an invalid pattern never compiles into a policy; nothing admits a
// client without an identity.
func FuzzIdentity(f *testing.F) {
	f.Add("*", webID)
	f.Add(webID, webID)
	f.Add(webID, apiID)
	f.Add("*.shop.serviceaccount.identity.linkerd.cluster.local", apiID)
	f.Add("*.cluster.local", "cluster.local")
	f.Add("a*", "ab")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, pattern, id string) {
		p, err := Compile(&PortPolicy{Default: Deny, Authorizations: []Authorization{{Authn: MeshTLS, Identities: []string{pattern}}}}, nil)
		if ValidIdentity(pattern) != nil {
			if err == nil {
				t.Fatalf("invalid identity %q compiled", pattern)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid identity %q refused: %v", pattern, err)
		}
		var want bool
		switch {
		case id == "":
			want = false
		case pattern == "*":
			want = true
		case strings.HasPrefix(pattern, "*."):
			want = strings.HasSuffix(id, pattern[1:]) && len(id) > len(pattern)-1
		default:
			want = id == pattern
		}
		c := Client{Addr: netip.MustParseAddr("198.18.0.1"), Identity: id}
		if got := p.CheckConn(c).Allowed; got != want {
			t.Fatalf("pattern %q, identity %q: allowed=%v want %v", pattern, id, got, want)
		}
		if p.CheckConn(Client{Addr: c.Addr}).Allowed {
			t.Fatalf("pattern %q admitted a client without identity", pattern)
		}
	})
}
