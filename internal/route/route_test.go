package route

import "testing"

func TestCurrent(t *testing.T) {
	var none *Current
	if got := none.Load(); got != nil {
		t.Errorf("nil Current: Load() = %v, want nil", got)
	}
	var c Current
	if got := c.Load(); got != nil {
		t.Errorf("zero Current: Load() = %v, want nil", got)
	}
	a := &Table{Parent: Parent{Name: "web"}}
	c.Store(a)
	b := &Table{Parent: Parent{Name: "web"}, HTTP: []HTTPRoute{{Meta: Meta{Name: "canary"}}}}
	c.Store(b)
	if got := c.Load(); got != b {
		t.Errorf("Load() = %p, want the last stored %p", got, b)
	}
}
