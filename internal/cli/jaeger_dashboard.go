package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// Jaeger's Deployment and UI port in the jaeger namespace (linkerd-jaeger's).
const (
	jaegerName   = "jaeger"
	jaegerUIPort = 16686
)

func newJaegerDashboardCommand(v *vizFlags) *cobra.Command {
	var (
		address, show string
		port          int
		wait          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Forward a local port to Jaeger's query port and show its URL",
		Long: `Port-forwards --address:--port to a ready pod of the jaeger extension's Jaeger (Deployment
jaeger in the jaeger namespace, port 16686, installed with jaeger.enabled=true), prints its URL
and its query API's (/api/services, /api/traces?service=linkerd-proxy), and with --show jaeger
opens it in a browser (xdg-open) if there is one. Weft's Jaeger, built from Jaeger's Go module,
serves the query API but only a placeholder page where Jaeger's web UI would be (docs/tracing.md):
read traces through the API or Grafana's Jaeger data source. It runs until
interrupted. When the extension was installed without Jaeger (jaeger.enabled=false, as the
seeds do with Tempo), it says so: open your tracing backend's UI instead.`,
		Example: "  weft jaeger dashboard\n  weft jaeger dashboard --port 0 --show url",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if show != "jaeger" && show != "url" {
				return fmt.Errorf("--show %q: want jaeger or url", show)
			}
			if err := checkLocalPort(port); err != nil {
				return err
			}
			cfg, c, err := v.kubeClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pod, err := waitReadyPod(ctx, c, v.vizNamespace, jaegerName, "Jaeger", wait)
			if errors.Is(err, errNoDeployment) {
				return fmt.Errorf("Jaeger is not installed: namespace %s has no Deployment %s. The jaeger extension runs its own Jaeger only with jaeger.enabled=true "+
					"(weft jaeger install --set jaeger.enabled=true | kubectl apply -f -); installed with jaeger.enabled=false, as the seeds do, "+
					"its spans go to webhook.collectorSvcAddr: open that backend's UI (e.g. Tempo through Grafana). See docs/tracing.md",
					v.vizNamespace, jaegerName)
			}
			if err != nil {
				return err
			}
			fw, err := forwardToPod(ctx, cfg, c, pod, address, port, jaegerUIPort, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			base := fw.base
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Jaeger extension dashboard available at:\n%s\n", base)
			fmt.Fprintf(out, "Its query API (the web UI is a placeholder page): %s/api/services\n", base)
			if show == "jaeger" {
				openBrowser(out, base)
			}
			fmt.Fprintln(out, "Press Ctrl-C to stop.")
			return fw.wait(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "localhost", "the local address to listen on")
	f.IntVarP(&port, "port", "p", jaegerUIPort, "the local port (0: any free port)")
	f.StringVar(&show, "show", "jaeger", "jaeger (open the UI) or url (print only)")
	f.DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for a ready Jaeger pod")
	return cmd
}
