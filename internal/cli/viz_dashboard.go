package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/compat"
)

// The dashboard's Deployment and port in the viz namespace (Linkerd viz's).
const (
	vizWebName = "web"
	vizWebPort = 8084
	// vizDashboardPort is Linkerd's default local port of viz dashboard.
	vizDashboardPort = 50750
)

func newVizDashboardCommand(v *vizFlags) *cobra.Command {
	var (
		address, show string
		port          int
		wait          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Forward a local port to the viz dashboard and show its URL",
		Long: `Port-forwards --address:--port to a ready pod of the dashboard (Deployment web in the viz
namespace, port 8084), prints the dashboard's URL (and Grafana's, when the chart has
grafana.url), and with --show linkerd opens it in a browser (xdg-open) if there is one. It
runs until interrupted. The dashboard refuses requests whose Host does not match
dashboard.enforcedHostRegexp; the default allows localhost and 127.0.0.1 — with another
--address, widen it.`,
		Example: "  weft viz dashboard\n  weft viz dashboard --port 0 --show url",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if show != compat.VizShowDashboard && show != "grafana" && show != "url" {
				return fmt.Errorf("--show %q: want linkerd, grafana or url", show)
			}
			if err := checkLocalPort(port); err != nil {
				return err
			}
			cfg, c, err := v.kubeClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pod, err := waitReadyPod(ctx, c, v.vizNamespace, vizWebName, "the dashboard", wait)
			if errors.Is(err, errNoDeployment) {
				return fmt.Errorf("%w; is viz installed? (weft viz install | kubectl apply -f -)", err)
			}
			if err != nil {
				return err
			}
			fw, err := forwardToPod(ctx, cfg, c, pod, address, port, vizWebPort, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			base := fw.base
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Weft dashboard available at:\n%s\n", base)
			grafana := ""
			if g, err := dashboardGrafanaURL(ctx, base); err == nil && g != "" {
				grafana = g
				fmt.Fprintf(out, "Grafana dashboard available at:\n%s\n", g)
			}
			switch show {
			case compat.VizShowDashboard:
				openBrowser(out, base)
			case "grafana":
				if grafana == "" {
					fmt.Fprintln(out, "No Grafana: the viz chart has no grafana.url.")
				} else {
					openBrowser(out, grafana)
				}
			}
			fmt.Fprintln(out, "Press Ctrl-C to stop.")
			return fw.wait(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "localhost", "the local address to listen on")
	f.IntVarP(&port, "port", "p", vizDashboardPort, "the local port (0: any free port)")
	f.StringVar(&show, "show", compat.VizShowDashboard, compat.VizShowDashboard+" (open the dashboard), grafana (open Grafana) or url (print only)")
	f.DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for a ready dashboard pod")
	return cmd
}

// dashboardGrafanaURL asks the dashboard's /api/config for Grafana's URL
// (the chart's grafana.externalUrl or grafana.url), "" when it has none.
func dashboardGrafanaURL(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/config", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("dashboard answered %s", resp.Status)
	}
	var cfg struct {
		GrafanaURL string `json:"grafanaUrl"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&cfg); err != nil {
		return "", fmt.Errorf("dashboard's /api/config: %w", err)
	}
	return cfg.GrafanaURL, nil
}
