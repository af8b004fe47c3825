// Package grpcserving runs a gRPC server under internal/serving, apart
// from it so that binaries without gRPC (the weft CLI) do not link it.
package grpcserving

import (
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/serving"
)

// Server serves srv on l. Stop lets in-flight RPCs finish for up to grace;
// streams still open then are cut.
func Server(name string, l net.Listener, srv *grpc.Server, grace time.Duration) serving.Server {
	return serving.Server{
		Name: name,
		Addr: l.Addr(),
		Serve: func() error {
			if err := srv.Serve(l); !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil // stopped: serving.Run says whether it was asked to
		},
		Stop: func() {
			defer l.Close() // in case Serve never ran
			stopped := make(chan struct{})
			go func() { srv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(grace):
				srv.Stop()
			}
		},
	}
}
