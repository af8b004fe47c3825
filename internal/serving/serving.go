// Package serving runs a binary's servers (HTTP, HTTPS; gRPC through
// grpcserving, so that binaries without gRPC do not link it) on their
// listeners under one errgroup: they serve until the context ends, then
// stop gracefully in order; a server that stops serving by itself stops
// the others and its error, naming it, is returned. Nothing is left
// running silently, and no Serve error is dropped.
//
// A binary asked to (an address file in the context, WithAddrFile) writes
// the addresses its servers are bound to, so that it can listen on port 0
// and a test or script learn where (ReadAddrFile) instead of picking a
// "free" port that another process may take first.
package serving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
)

// Server is one server on its listener.
type Server struct {
	Name  string       // "injector webhook server"; errors add " on <Addr>"
	Addr  net.Addr     // where it listens (the address file's value for Name)
	Serve func() error // blocks while serving
	Stop  func()       // makes Serve return, gracefully where it can
}

// HTTP serves srv on l (over TLS when srv.TLSConfig is set, with the
// certificates it names). Stop lets in-flight requests finish for up to
// grace, then closes the rest.
func HTTP(name string, l net.Listener, srv *http.Server, grace time.Duration) Server {
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = 10 * time.Second
	}
	return Server{
		Name: name,
		Addr: l.Addr(),
		Serve: func() error {
			if srv.TLSConfig != nil {
				return srv.ServeTLS(l, "", "")
			}
			return srv.Serve(l)
		},
		Stop: func() {
			defer l.Close() // in case Serve never ran
			if grace <= 0 {
				srv.Close()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
		},
	}
}

// Listen binds every address (host:port; port 0 picks a free one), or
// none: on an error the ones already bound are closed.
func Listen(addrs ...string) ([]net.Listener, error) {
	ls := make([]net.Listener, 0, len(addrs))
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("listening on %s: %w", a, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// Run serves until ctx ends, then calls draining with a nil cause (for
// example /ready turns 503) and stops the servers in order, returning nil.
// A server whose Serve returns before that (a failed TLS setup, a listener
// closed under it) stops the others the same way, draining getting its
// error as the cause, and Run returns that error, naming the server.
// With an address file in ctx (WithAddrFile), Run first writes every
// server's address there; if it cannot, nothing is served.
func Run(ctx context.Context, draining func(cause error), servers ...Server) error {
	if path := addrFile(ctx); path != "" {
		addrs := make(map[string]string, len(servers))
		for _, s := range servers {
			addrs[s.Name] = s.Addr.String()
		}
		if err := WriteAddrFile(path, addrs); err != nil {
			for _, s := range servers {
				s.Stop()
			}
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range servers {
		g.Go(func() error {
			err := s.Serve()
			if gctx.Err() != nil {
				return nil // asked to stop (http.ErrServerClosed, or nil from gRPC)
			}
			if err == nil || errors.Is(err, http.ErrServerClosed) {
				err = errors.New("stopped serving")
			}
			return fmt.Errorf("%s on %s: %w", s.Name, s.Addr, err)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		if draining != nil {
			var cause error
			if ctx.Err() == nil {
				cause = context.Cause(gctx) // a server stopped on its own
			}
			draining(cause)
		}
		for _, s := range servers {
			s.Stop()
		}
		return nil
	})
	return g.Wait()
}
