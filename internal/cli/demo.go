package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/demo"
)

func newDemoCommand(log *slog.Logger) *cobra.Command {
	cfg := demo.Config{Log: log}
	var output string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a whole mesh on this machine, without Kubernetes, and watch its golden metrics",
		Long: `Starts, as local processes, the control plane (identity with a CA it generates,
destination fed by a registry file) and a demo application — vote-bot → web → emoji (3
replicas, one slow) and voting (fails some requests) — each replica behind its own
weft-proxy with mTLS. Run as root, each replica gets its own network namespace and its
traffic is sent through its proxy by the iptables rules linkerd-init writes (transparent
mode); otherwise the proxies listen on loopback ports and the apps call through them
(explicit mode). Drives steady traffic and shows, from the proxies' own /metrics, each
service's success rate, requests per second and latency percentiles, how load is balanced
over the replicas, and which identities talk over mTLS.

Ctrl-C (or --for) stops every process it started and removes the files it made. Needs
weft-proxy and weft-controller beside this binary (make build puts them in bin/), in
--bin-dir, or in PATH.`,
		Example: "  weft demo\n  weft demo --for 30s\n  weft demo --for 20s --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "table":
			case "json":
				cfg.JSON = true
			default:
				return fmt.Errorf("--output %q: want table or json", output)
			}
			if cfg.For < 0 {
				return fmt.Errorf("--for %v: want a positive duration, or 0 to run until Ctrl-C", cfg.For)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this executable: %w", err)
			}
			cfg.Self = self
			cfg.Out = cmd.OutOrStdout()
			if f, ok := cfg.Out.(*os.File); ok && !cfg.JSON {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					cfg.Live = true
				}
			}
			// A closed output (weft demo | head) is an error on write that
			// the demo notices, stopping what it started, rather than a
			// SIGPIPE that would leave its processes' namespaces behind.
			signal.Ignore(syscall.SIGPIPE)
			return demo.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.For, "for", 0, "stop after this long (0: run until Ctrl-C)")
	f.DurationVar(&cfg.Interval, "interval", 2*time.Second, "how often the view refreshes")
	f.Float64Var(&cfg.Rate, "rate", 50, "requests per second the vote bot sends")
	f.Float64Var(&cfg.FailRate, "fail-rate", 0.1, "fraction of requests the voting service fails")
	f.DurationVar(&cfg.SlowDelay, "slow-delay", 40*time.Millisecond, "latency added by one emoji replica")
	f.StringVar(&cfg.BinDir, "bin-dir", "", "where weft-proxy and weft-controller are (default: beside this binary, then PATH)")
	f.StringVar(&cfg.Mode, "mode", "auto", "explicit (loopback ports, no root), transparent (network namespaces and iptables, root) or auto")
	f.BoolVar(&cfg.KeepLogs, "keep-logs", false, "keep the processes' logs and files (removed by default)")
	f.StringVarP(&output, "output", "o", "table", "table or json (one event per line)")
	cmd.AddCommand(newDemoAppCommand(log))
	return cmd
}

// newDemoAppCommand is one process of the demo application, started by
// `weft demo` itself.
func newDemoAppCommand(log *slog.Logger) *cobra.Command {
	var cfg demo.AppConfig
	cmd := &cobra.Command{
		Use:    "app",
		Short:  "One process of the demo application (started by weft demo)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return demo.RunApp(cmd.Context(), cfg, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Role, "role", "", "web, emoji, voting or bot")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "listen address (web, emoji, voting)")
	f.IntVar(&cfg.ListenFD, "listen-fd", 0, "serve on this inherited listening socket instead of --listen (weft demo hands one over)")
	f.StringVar(&cfg.AddrFile, "addr-file", "", "once listening, write the bound address to this file (JSON, \"demo ROLE server\" → host:port): with port 0 in --listen, where to reach the app")
	f.StringVar(&cfg.Emoji, "emoji", "", "web: base URL of the emoji service")
	f.StringVar(&cfg.Voting, "voting", "", "web: base URL of the voting service")
	f.StringVar(&cfg.Target, "target", "", "bot: base URL of the web service")
	f.Float64Var(&cfg.Rate, "rate", 50, "bot: requests per second")
	f.DurationVar(&cfg.Delay, "delay", 0, "emoji: added latency")
	f.Float64Var(&cfg.FailRate, "fail-rate", 0, "voting: fraction of requests failed")
	return cmd
}
