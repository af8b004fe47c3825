package jsonpatch

import (
	"encoding/json"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"linkerd.io/inject", "linkerd.io~1inject"},
		{"a~b/c", "a~0b~1c"},
		{"plain", "plain"},
	} {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal([]Op{Add("/a", 1), Remove("/b")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `[{"op":"add","path":"/a","value":1},{"op":"remove","path":"/b"}]`; got != want {
		t.Errorf("JSON = %s, want %s", got, want)
	}
}
