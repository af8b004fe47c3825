package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Jaeger's Deployment and UI port in the jaeger namespace (linkerd-jaeger's).
const (
	jaegerName   = "jaeger"
	jaegerUIPort = 16686
)

// errJaegerNotInstalled says the extension runs without its own Jaeger.
var errJaegerNotInstalled = errors.New("not installed")

func newJaegerDashboardCommand(v *vizFlags) *cobra.Command {
	var (
		address, show string
		port          int
		wait          time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Forward a local port to the Jaeger UI and show its URL",
		Long: `Port-forwards --address:--port to a ready pod of the jaeger extension's Jaeger (Deployment
jaeger in the jaeger namespace, port 16686, installed with jaeger.enabled=true), prints the UI's
URL and with --show jaeger opens it in a browser (xdg-open) if there is one. It runs until
interrupted. When the extension was installed without Jaeger (jaeger.enabled=false, as the
seeds do with Tempo), it says so: open your tracing backend's UI instead.`,
		Example: "  weft jaeger dashboard\n  weft jaeger dashboard --port 0 --show url",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if show != "jaeger" && show != "url" {
				return fmt.Errorf("--show %q: want jaeger or url", show)
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
			pod, err := waitJaegerPod(ctx, c, v.vizNamespace, wait)
			if errors.Is(err, errJaegerNotInstalled) {
				return fmt.Errorf("Jaeger is not installed: namespace %s has no Deployment %s. The jaeger extension runs its own Jaeger only with jaeger.enabled=true "+
					"(weft jaeger install --set jaeger.enabled=true | kubectl apply -f -); installed with jaeger.enabled=false, as the seeds do, "+
					"its spans go to webhook.collectorSvcAddr: open that backend's UI (e.g. Tempo through Grafana). See docs/tracing.md",
					v.vizNamespace, jaegerName)
			}
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
			fw, err := portforward.NewOnAddresses(dialer, []string{address}, []string{fmt.Sprintf("%d:%d", port, jaegerUIPort)}, stop, ready, io.Discard, cmd.ErrOrStderr())
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
			fmt.Fprintf(out, "Jaeger extension dashboard available at:\n%s\n", base)
			if show == "jaeger" {
				openBrowser(out, base)
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
	f.IntVarP(&port, "port", "p", jaegerUIPort, "the local port (0: any free port)")
	f.StringVar(&show, "show", "jaeger", "jaeger (open the UI) or url (print only)")
	f.DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for a ready Jaeger pod")
	return cmd
}

// waitJaegerPod returns a running, ready pod of Jaeger's Deployment,
// waiting up to wait for one; errJaegerNotInstalled at once when there is
// no such Deployment.
func waitJaegerPod(ctx context.Context, c kubernetes.Interface, ns string, wait time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(wait)
	for {
		pod, err := jaegerPod(ctx, c, ns)
		if err == nil || errors.Is(err, errJaegerNotInstalled) || time.Now().After(deadline) {
			return pod, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// jaegerPod returns a running, ready pod of Jaeger's Deployment.
func jaegerPod(ctx context.Context, c kubernetes.Interface, ns string) (*corev1.Pod, error) {
	d, err := c.AppsV1().Deployments(ns).Get(ctx, jaegerName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errJaegerNotInstalled
	}
	if err != nil {
		return nil, fmt.Errorf("Deployment %s/%s: %w", ns, jaegerName, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("Deployment %s/%s selector: %w", ns, jaegerName, err)
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing Jaeger's pods: %w", err)
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
	return nil, fmt.Errorf("no ready pod of Jaeger (Deployment %s in namespace %s, %d pods)", jaegerName, ns, len(pods.Items))
}
