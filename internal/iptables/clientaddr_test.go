package iptables

import (
	"testing"

	"github.com/weftmesh/weft/internal/golden"
)

func TestClientAddrRulesGolden(t *testing.T) {
	tests := []struct {
		name string
		jump bool
	}{
		{"client-addr.rules", true},
		{"client-addr-no-jump.rules", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { golden.Check(t, tt.name, []byte(ClientAddrRules(tt.jump))) })
	}
}
