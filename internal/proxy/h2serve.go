package proxy

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// serveH2 serves an HTTP/2 connection with the proxy's own HTTP/2 server
// (internal/h2server) until it closes: issue 17 measured net/http's at a
// third of each proxy's CPU in the bench's HTTP/2 pair. The requests'
// context carries the connection's info, as net/http's ConnContext does
// for the other servers.
func (p *Proxy) serveH2(srv *httpServer, tc *trackedConn) {
	srv.h2.ServeConn(servedConnContext(tc), tc) // closes tc
}

// servedConnContext is the parent context of the requests served on tc by
// the proxy's own servers: the connection's info and local address.
func servedConnContext(tc *trackedConn) context.Context {
	ctx := context.WithValue(context.Background(), connKey{}, tc.info)
	return context.WithValue(ctx, http.LocalAddrContextKey, tc.LocalAddr())
}

// hasH2Preface reports whether tc begins with the HTTP/2 client preface. A
// port declared HTTP/2 or gRPC may still get HTTP/1 (net/http's server,
// which serves those, checks the same way), and detection has seen the
// preface already (the bytes are buffered then). The wait is bounded like
// a request head's (10 s without a header read timeout, as h2server's).
func (p *Proxy) hasH2Preface(tc *trackedConn) bool {
	wait := p.cfg.HeaderReadTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	tc.SetReadDeadline(time.Now().Add(wait))
	defer tc.SetReadDeadline(time.Time{})
	b, _ := tc.br.Peek(len(http2.ClientPreface))
	return bytes.Equal(b, []byte(http2.ClientPreface))
}
