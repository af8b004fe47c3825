package tap

import (
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
)

// Dial connects to a proxy's control port over mTLS. cfg is the tap
// server's client configuration naming the identity the proxy must present
// (certify.Manager.ClientConfig(proxyID)). The connection is lazy: errors
// surface on the first Watch.
func Dial(addr string, cfg *tls.Config) (tapv1.TapClient, func() error, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, nil, fmt.Errorf("tap: dialing %s: %w", addr, err)
	}
	return tapv1.NewTapClient(conn), conn.Close, nil
}
