// Command weft is Weft's command line: `weft demo` runs a whole mesh on this
// machine; install, upgrade, check, version, uninstall, inject/uninject and
// the viz and jaeger extensions' commands install and operate it on Kubernetes
// (internal/cli).
package main

import (
	"context"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftmesh/weft/internal/cli"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := cli.NewRoot(logger).ExecuteContext(ctx); err != nil {
		log.Fatalf("weft: %v", err)
	}
}
