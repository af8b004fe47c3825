// Package controlclient dials the control plane's gRPC services (the
// destination service and the policy controller) from the proxy: over
// mTLS when the proxy has an identity and knows the identity the service
// must present, else in plaintext. The connection reconnects by itself
// with backoff, so a control plane that starts later, or whose certificate
// is not issued yet, is reached once it is.
package controlclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/identity/certify"
)

// Backoff is the reconnect schedule toward a control-plane service.
var Backoff = backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second}

// Dial returns a client connection to addr (it does not connect yet).
// With id and serverName it is mTLS: TLS 1.3, the server's certificate
// must chain to id's trust anchors and name serverName, and the proxy
// presents its own certificate (a handshake waits for the first one).
// With id nil or serverName empty it is plaintext.
func Dial(addr, serverName string, id *certify.Manager, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if id != nil && serverName != "" {
		creds = credentials.NewTLS(ClientTLS(id, serverName))
	}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: Backoff})}, opts...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("control plane %s: %w", addr, err)
	}
	return conn, nil
}

// ClientTLS is the proxy's client configuration toward a control-plane
// service that must present serverName: the certificate request waits for
// the proxy's first certificate (or the handshake's deadline).
func ClientTLS(id *certify.Manager, serverName string) *tls.Config {
	c := id.ClientConfig(serverName, "h2")
	c.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		select {
		case <-id.Ready():
			return id.Certificate(), nil
		case <-info.Context().Done():
			return nil, errors.New("no identity certificate yet")
		}
	}
	return c
}
