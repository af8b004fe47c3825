// Command weft-controller runs Weft's control-plane components, one per
// subcommand (identity, destination, injector, policy; viz's metrics-api,
// web and tap; the jaeger extension's jaeger-injector), so that a single
// image serves every control-plane Deployment. With --addr-file, a
// component says where its servers listen (for port 0 in tests).
package main

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/controller"
	"github.com/weftmesh/weft/internal/serving"
	"github.com/weftmesh/weft/internal/version"
)

func main() {
	level := new(slog.LevelVar)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	root := &cobra.Command{
		Use:           "weft-controller",
		Short:         "Weft's control plane",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var logLevel, addrFile string
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	root.PersistentFlags().StringVar(&addrFile, "addr-file", "", "write the addresses the component's servers are bound to (JSON, server name → host:port) to this file once they listen: with port 0 in --addr/--admin-addr, where to reach them")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		cmd.SetContext(serving.WithAddrFile(cmd.Context(), addrFile))
		return level.UnmarshalText([]byte(logLevel))
	}
	root.AddCommand(controller.NewIdentityCommand(logger), controller.NewDestinationCommand(logger), controller.NewInjectorCommand(logger), controller.NewJaegerInjectorCommand(logger),
		controller.NewPolicyCommand(logger), controller.NewMetricsAPICommand(logger), controller.NewWebCommand(logger), controller.NewTapCommand(logger))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		log.Fatalf("weft-controller: %v", err)
	}
}
