package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/selfcert"
	"github.com/weftmesh/weft/internal/kubeclient"
	"github.com/weftmesh/weft/internal/serving"
	"github.com/weftmesh/weft/internal/viz/tapserver"
)

// TapOptions are the tap command's flags.
type TapOptions struct {
	Addr, AdminAddr  string
	Kubeconfig       string
	ControllerNS     string
	TrustDomain      string
	Identity         string // the tap server's own identity
	IdentityAddr     string
	IdentityName     string
	TokenFile        string
	TrustAnchorsFile string
	DefaultMaxRPS    float64
}

// NewTapCommand returns `weft-controller tap`.
func NewTapCommand(log *slog.Logger) *cobra.Command {
	o := TapOptions{}
	cmd := &cobra.Command{
		Use:   "tap",
		Short: "Serve viz's tap: live requests of a resource's pods, to callers Kubernetes RBAC allows",
		Long: `Serves POST /apis/tap.linkerd.io/v1alpha1/watch/namespaces/<ns>/<resource>/<name>/tap:
finds the resource's meshed pods, opens a tap on each pod's proxy (control port 4190, mTLS with
this server's own identity, obtained from the identity service with its ServiceAccount token)
and streams the merged events as JSON lines. The caller's bearer token (header
Weft-Tap-Authorization, or Authorization) is checked with a TokenReview, and a
SubjectAccessReview must allow it to watch <resource>/tap in API group tap.linkerd.io.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunTap(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Addr, "addr", ":"+strconv.Itoa(compat.VizTapPort), "tap listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9998", "admin listen address (/metrics, /ready, /live)")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.StringVar(&o.ControllerNS, "controller-namespace", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
	f.StringVar(&o.TrustDomain, "trust-domain", compat.DefaultIdentityTrustDomain, "the identity trust domain")
	f.StringVar(&o.Identity, "identity", "", "this server's identity (default tap.<viz namespace>.serviceaccount.identity.<controller namespace>.<trust domain>, from $_pod_ns)")
	f.StringVar(&o.IdentityAddr, "identity-addr", "", "the identity service (default "+fmt.Sprintf(compat.IdentityServiceAddrFormat, "<controller namespace>", "cluster.local")+")")
	f.StringVar(&o.IdentityName, "identity-name", "", "the identity service's identity (default "+fmt.Sprintf(compat.IdentityServiceNameFormat, "<controller namespace>", "<controller namespace>", "<trust domain>")+")")
	f.StringVar(&o.TokenFile, "token-file", compat.IdentityTokenFile, "this pod's ServiceAccount token for the identity service (audience "+compat.AudienceIdentity+")")
	f.StringVar(&o.TrustAnchorsFile, "trust-anchors-file", "", "PEM trust anchors (default: the "+compat.TrustRootsConfigMap+" ConfigMap of the controller namespace)")
	f.Float64Var(&o.DefaultMaxRPS, "default-max-rps", 100, "requests tapped per second when the caller names no limit")
	return cmd
}

// RunTap serves tap until ctx ends or a server fails.
func RunTap(ctx context.Context, o TapOptions, log *slog.Logger) error {
	kube, err := kubeclient.Clientset(o.Kubeconfig)
	if err != nil {
		return err
	}
	if o.Identity == "" {
		ns := os.Getenv("_pod_ns")
		if ns == "" {
			ns = compat.VizNamespace
		}
		o.Identity = fmt.Sprintf(compat.VizTapIdentityFormat, ns, o.ControllerNS, o.TrustDomain)
	}
	if o.IdentityAddr == "" {
		o.IdentityAddr = fmt.Sprintf(compat.IdentityServiceAddrFormat, o.ControllerNS, compat.DefaultClusterDomain)
	}
	if o.IdentityName == "" {
		o.IdentityName = fmt.Sprintf(compat.IdentityServiceNameFormat, o.ControllerNS, o.ControllerNS, o.TrustDomain)
	}
	anchorsPEM, err := trustAnchors(ctx, kube, o)
	if err != nil {
		return err
	}
	// The tap server's own certificate, as the destination's (selfcert).
	id, err := selfcert.New(selfcert.Config{Identity: o.Identity, IdentityAddr: o.IdentityAddr, IdentityName: o.IdentityName,
		TokenFile: o.TokenFile, AnchorsPEM: anchorsPEM, Log: log})
	if err != nil {
		return err
	}
	go id.Run(ctx)
	srv, err := tapserver.New(tapserver.Config{Kube: kube, Identity: id, ControlPlaneNamespace: o.ControllerNS,
		TrustDomain: o.TrustDomain, MaxRPS: o.DefaultMaxRPS, Log: log})
	if err != nil {
		return err
	}
	ls, err := serving.Listen(o.Addr, o.AdminAddr)
	if err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	var stopping atomic.Bool
	reg := newRegistry()
	reg.MustRegister(id.Collectors()...)
	ready := func() bool {
		select {
		case <-id.Ready():
			return !stopping.Load()
		default:
			return false
		}
	}
	adm := adminServer(log, reg, ready)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	log.Info("tap started", "addr", ls[0].Addr().String(), "identity", o.Identity, "identity-addr", o.IdentityAddr)
	return serving.Run(ctx, func(error) { stopping.Store(true) },
		serving.HTTP("tap server", ls[0], hs, 5*time.Second),
		serving.HTTP("tap admin server", ls[1], adm, 0))
}

func trustAnchors(ctx context.Context, kube kubernetes.Interface, o TapOptions) ([]byte, error) {
	if o.TrustAnchorsFile != "" {
		b, err := os.ReadFile(o.TrustAnchorsFile)
		if err != nil {
			return nil, fmt.Errorf("trust anchors: %w", err)
		}
		return b, nil
	}
	cm, err := kube.CoreV1().ConfigMaps(o.ControllerNS).Get(ctx, compat.TrustRootsConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("trust anchors: ConfigMap %s/%s: %w", o.ControllerNS, compat.TrustRootsConfigMap, err)
	}
	pem := cm.Data[compat.TrustRootsKey]
	if pem == "" {
		return nil, fmt.Errorf("trust anchors: ConfigMap %s/%s has no %s", o.ControllerNS, compat.TrustRootsConfigMap, compat.TrustRootsKey)
	}
	return []byte(pem), nil
}
