package discovery

import (
	"testing"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/balance"
)

// TestEndpointTyping: every hint on the wire reaches the typed peer.
func TestEndpointTyping(t *testing.T) {
	id := &destinationv1.TLSIdentity{DnsName: "db.shop.serviceaccount.identity.linkerd.cluster.local"}
	set := map[string]string{"dst_namespace": "shop", "dst_service": "db"}
	for _, tc := range []struct {
		name string
		in   *destinationv1.Endpoint
		want balance.Peer
	}{
		{"unmeshed", &destinationv1.Endpoint{Addr: "198.18.0.9:80"},
			balance.Peer{Labels: set}},
		{"meshed HTTP (old servers: PROXY hint only)", &destinationv1.Endpoint{Addr: "198.18.0.9:80", TlsIdentity: id,
			ProtocolHint: &destinationv1.ProtocolHint{Protocol: destinationv1.ProtocolHint_PROXY}},
			balance.Peer{Meshed: true, Identity: id.DnsName, Labels: set}},
		{"meshed opaque with transport", &destinationv1.Endpoint{Addr: "198.18.0.9:5432", TlsIdentity: id, Meshed: true, Zone: "zone-a",
			MetricLabels: map[string]string{"dst_pod": "db-0", "dst_service": "db-headless"},
			ProtocolHint: &destinationv1.ProtocolHint{Protocol: destinationv1.ProtocolHint_OPAQUE,
				OpaqueTransport: &destinationv1.OpaqueTransport{InboundPort: 4143}}},
			balance.Peer{Meshed: true, Identity: id.DnsName, Opaque: true, OpaquePort: 4143, Zone: "zone-a",
				Labels: map[string]string{"dst_namespace": "shop", "dst_service": "db-headless", "dst_pod": "db-0"}}},
		{"unmeshed opaque: no identity, no transport", &destinationv1.Endpoint{Addr: "198.18.0.9:5432", TlsIdentity: id,
			ProtocolHint: &destinationv1.ProtocolHint{Protocol: destinationv1.ProtocolHint_OPAQUE,
				OpaqueTransport: &destinationv1.OpaqueTransport{InboundPort: 4143}}},
			balance.Peer{Opaque: true, Labels: set}},
		{"transport port out of range", &destinationv1.Endpoint{Addr: "198.18.0.9:5432", TlsIdentity: id, Meshed: true,
			ProtocolHint: &destinationv1.ProtocolHint{Protocol: destinationv1.ProtocolHint_OPAQUE,
				OpaqueTransport: &destinationv1.OpaqueTransport{InboundPort: 70000}}},
			balance.Peer{Meshed: true, Identity: id.DnsName, Opaque: true, Labels: set}},
	} {
		got := endpoint(tc.in, set).Peer
		if !got.Equal(tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
