package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// errNoDeployment: the Deployment a dashboard command forwards to does not
// exist (the extension, or that part of it, is not installed).
var errNoDeployment = errors.New("no such Deployment")

// waitReadyPod returns a running, ready pod of Deployment ns/name, waiting
// up to wait for one; what names it in errors ("the dashboard", "Jaeger").
// A missing Deployment is errNoDeployment at once.
func waitReadyPod(ctx context.Context, c kubernetes.Interface, ns, name, what string, wait time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(wait)
	for {
		pod, err := readyPod(ctx, c, ns, name, what)
		if err == nil || errors.Is(err, errNoDeployment) || time.Now().After(deadline) {
			return pod, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// readyPod returns a running, ready pod of Deployment ns/name.
func readyPod(ctx context.Context, c kubernetes.Interface, ns, name, what string) (*corev1.Pod, error) {
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s (Deployment %s in namespace %s): %w", what, name, ns, errNoDeployment)
	}
	if err != nil {
		return nil, fmt.Errorf("%s (Deployment %s in namespace %s): %w", what, name, ns, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("Deployment %s/%s selector: %w", ns, name, err)
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", what, err)
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
	return nil, fmt.Errorf("no ready pod of %s (Deployment %s in namespace %s, %d pods)", what, name, ns, len(pods.Items))
}

// checkLocalPort checks a dashboard's --port.
func checkLocalPort(port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("--port %d: want 0 (any free port) to 65535", port)
	}
	return nil
}

// podForward is a running port-forward from a local address to a pod's
// port.
type podForward struct {
	pod  *corev1.Pod
	base string // http://address:port, the local end
	stop chan struct{}
	errc chan error
}

// forwardToPod port-forwards address:local (0: any free port) to the pod's
// remote port and returns once the forward is ready.
func forwardToPod(ctx context.Context, cfg *rest.Config, c kubernetes.Interface, pod *corev1.Pod, address string, local, remote int, errOut io.Writer) (*podForward, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	u := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	f := &podForward{pod: pod, stop: make(chan struct{}), errc: make(chan error, 1)}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{address}, []string{fmt.Sprintf("%d:%d", local, remote)}, f.stop, ready, io.Discard, errOut)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	go func() { f.errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.errc:
		return nil, fmt.Errorf("port-forward to %s/%s: %w", pod.Namespace, pod.Name, err)
	case <-ctx.Done():
		close(f.stop)
		return nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		close(f.stop)
		return nil, fmt.Errorf("port-forward: no local port: %v", err)
	}
	f.base = "http://" + net.JoinHostPort(address, strconv.Itoa(int(ports[0].Local)))
	return f, nil
}

// wait runs the forward until ctx ends (nil) or the forward does (its
// error).
func (f *podForward) wait(ctx context.Context) error {
	select {
	case err := <-f.errc:
		if err != nil {
			return fmt.Errorf("port-forward to %s/%s ended: %w", f.pod.Namespace, f.pod.Name, err)
		}
		return nil
	case <-ctx.Done():
		close(f.stop)
		return nil
	}
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
