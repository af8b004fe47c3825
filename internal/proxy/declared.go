package proxy

import (
	"net"

	"github.com/weftmesh/weft/internal/authz"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/detect"
)

// declaredProtocol is the proxyProtocol the Server selecting an inbound
// connection's port declares (authz.ProtocolUnknown: detect). The proxy's
// own ports (the opaque transport arriving at its inbound port) are never
// looked up: their policy is that of the port the transport names.
func (p *Proxy) declaredProtocol(info *connInfo) authz.Protocol {
	if info.direction != compat.Inbound || info.dst == "" || info.port == 0 || p.ownPorts[info.port] {
		return authz.ProtocolUnknown
	}
	switch proto := p.policies.Policy(info.port).Protocol(); proto {
	case authz.ProtocolHTTP1, authz.ProtocolHTTP2, authz.ProtocolGRPC, authz.ProtocolOpaque, authz.ProtocolTLS:
		return proto
	}
	return authz.ProtocolUnknown
}

// serveDeclared handles an inbound connection to a port whose Server
// declares its protocol, as Linkerd does: opaque is forwarded as TCP
// without reading a byte (a server-speaks-first application answers at
// once); HTTP/1, HTTP/2 and gRPC go to the HTTP server, and TLS is
// forwarded as TCP for the application to terminate, once the first byte
// has told mTLS from another proxy (terminated here, then handled as the
// declared protocol) apart from the rest (an opaque port too, in forward
// mode, when the connection was dialed at the inbound listener). A slow or silent client is
// never forwarded as opaque TCP past the Server's routes and rate limit.
func (p *Proxy) serveDeclared(c net.Conn, info *connInfo, proto authz.Protocol) {
	if proto == authz.ProtocolOpaque && !info.direct {
		info.opaque = true
		p.serveTCP(c, info)
		return
	}
	// A connection dialed at the inbound listener in forward mode may be
	// the opaque transport, which starts with a ClientHello: there even an
	// opaque port looks at the first byte.
	res, dc, err := detect.DetectTLS(c, p.cfg.DetectTimeout)
	if err != nil {
		p.log.Debug("connection closed before its first byte", "direction", info.direction, "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if res.Protocol == detect.TLS && p.id != nil && res.SNI == p.id.Identity() {
		p.serveMeshTLS(dc, info)
		return
	}
	if res.Protocol == detect.TLS {
		info.sni = res.SNI
	}
	p.serveAs(dc, info, proto)
}

// serveAs hands a connection to the handler of its declared protocol.
func (p *Proxy) serveAs(c net.Conn, info *connInfo, proto authz.Protocol) {
	switch proto {
	case authz.ProtocolHTTP1, authz.ProtocolHTTP2, authz.ProtocolGRPC:
		p.serveHTTPConn(c, info, proto != authz.ProtocolHTTP1)
	default:
		info.opaque = proto == authz.ProtocolOpaque
		p.serveTCP(c, info)
	}
}
