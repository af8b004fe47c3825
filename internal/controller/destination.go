package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	"github.com/weftmesh/weft/internal/destination"
)

// DestinationOptions are the destination command's flags.
type DestinationOptions struct {
	Registry  string
	Addr      string
	AdminAddr string
	Reload    time.Duration
}

// NewDestinationCommand returns `weft-controller destination`.
func NewDestinationCommand(log *slog.Logger) *cobra.Command {
	o := DestinationOptions{}
	cmd := &cobra.Command{
		Use:   "destination",
		Short: "Serve service discovery to proxies",
		Long: `Runs the destination service: proxies watch a target (a service authority or an IP:port)
and receive its endpoints as incremental updates, with each endpoint's identity and protocol.

This version serves a registry file (--registry; YAML or JSON, re-read when it changes) for
hosts without Kubernetes. The Kubernetes backend (Services, EndpointSlices, Pods) is not built
yet. The gRPC port is plaintext: keep it on a trusted network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunDestination(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Registry, "registry", "", "registry file of services and endpoints (required)")
	f.StringVar(&o.Addr, "addr", ":8086", "gRPC listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9996", "admin listen address (/metrics, /ready, /live)")
	f.DurationVar(&o.Reload, "registry-poll", time.Second, "how often the registry file is checked for changes")
	return cmd
}

// RunDestination serves until ctx ends.
func RunDestination(ctx context.Context, o DestinationOptions, log *slog.Logger) error {
	if o.Registry == "" {
		return errors.New("--registry is required (the Kubernetes backend is not built yet)")
	}
	backend, err := destination.NewFileBackend(o.Registry, log)
	if err != nil {
		return err
	}
	go backend.Run(ctx, o.Reload)
	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("destination listener: %w", err)
	}
	var ready atomic.Bool
	admin, err := serveAdmin(o.AdminAddr, prometheus.NewRegistry(), &ready)
	if err != nil {
		l.Close()
		return err
	}
	srv := grpc.NewServer()
	destinationv1.RegisterDestinationServer(srv, destination.NewServer(backend, log))
	go srv.Serve(l)
	ready.Store(true)
	log.Info("destination service started", "addr", l.Addr().String(), "registry", o.Registry)
	<-ctx.Done()
	ready.Store(false)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop() // watch streams never end by themselves
	}
	admin.Close()
	return nil
}
