package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

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
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d: want 0 (any free port) to 65535", port)
			}
			cfg, err := v.restConfig()
			if err != nil {
				return err
			}
			c, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			ctx := cmd.Context()
			pod, err := waitDashboardPod(ctx, c, v.vizNamespace, wait)
			if err != nil {
				return err
			}
			transport, upgrader, err := spdy.RoundTripperFor(cfg)
			if err != nil {
				return fmt.Errorf("port-forward: %w", err)
			}
			u := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
			dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
			stop, ready := make(chan struct{}), make(chan struct{})
			fw, err := portforward.NewOnAddresses(dialer, []string{address}, []string{fmt.Sprintf("%d:%d", port, vizWebPort)}, stop, ready, io.Discard, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("port-forward to %s/%s: %w", pod.Namespace, pod.Name, err)
			}
			errc := make(chan error, 1)
			go func() { errc <- fw.ForwardPorts() }()
			select {
			case <-ready:
			case err := <-errc:
				return fmt.Errorf("port-forward to %s/%s: %w", pod.Namespace, pod.Name, err)
			case <-ctx.Done():
				close(stop)
				return ctx.Err()
			}
			ports, err := fw.GetPorts()
			if err != nil || len(ports) == 0 {
				close(stop)
				return fmt.Errorf("port-forward: no local port: %v", err)
			}
			base := "http://" + net.JoinHostPort(address, strconv.Itoa(int(ports[0].Local)))
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
			select {
			case err := <-errc:
				if err != nil {
					return fmt.Errorf("port-forward to %s/%s ended: %w", pod.Namespace, pod.Name, err)
				}
				return nil
			case <-ctx.Done():
				close(stop)
				return nil
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "localhost", "the local address to listen on")
	f.IntVarP(&port, "port", "p", vizDashboardPort, "the local port (0: any free port)")
	f.StringVar(&show, "show", compat.VizShowDashboard, compat.VizShowDashboard+" (open the dashboard), grafana (open Grafana) or url (print only)")
	f.DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for a ready dashboard pod")
	return cmd
}

// waitDashboardPod returns a running, ready pod of the dashboard's
// Deployment, waiting up to wait for one.
func waitDashboardPod(ctx context.Context, c kubernetes.Interface, ns string, wait time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(wait)
	for {
		pod, err := dashboardPod(ctx, c, ns)
		if err == nil || time.Now().After(deadline) {
			return pod, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// dashboardPod returns a running, ready pod of the dashboard's Deployment.
func dashboardPod(ctx context.Context, c kubernetes.Interface, ns string) (*corev1.Pod, error) {
	d, err := c.AppsV1().Deployments(ns).Get(ctx, vizWebName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the dashboard (Deployment %s in namespace %s): %w; is viz installed? (weft viz install | kubectl apply -f -)", vizWebName, ns, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("Deployment %s/%s selector: %w", ns, vizWebName, err)
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the dashboard's pods: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("no ready pod of the dashboard (Deployment %s in namespace %s, %d pods)", vizWebName, ns, len(pods.Items))
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

// openBrowser opens u with xdg-open when there is one; otherwise the URL
// printed above is all the user needs.
func openBrowser(w io.Writer, u string) {
	p, err := exec.LookPath("xdg-open")
	if err != nil {
		fmt.Fprintln(w, "(no browser opener found: open the URL above)")
		return
	}
	if err := exec.Command(p, u).Start(); err != nil {
		fmt.Fprintf(w, "(could not open a browser: %v)\n", err)
	}
}
