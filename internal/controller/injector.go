package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/injector"
	"github.com/weftmesh/weft/internal/kubeclient"
	"github.com/weftmesh/weft/internal/serving"
	"github.com/weftmesh/weft/internal/version"
)

// InjectorOptions are the injector command's flags.
type InjectorOptions struct {
	Kubeconfig   string
	ControllerNS string
	Values       string
	TrustAnchors string
	TLSCert      string
	TLSKey       string
	Addr         string
	AdminAddr    string
	// WatchConfig follows the ConfigMaps linkerd-config and
	// linkerd-identity-trust-roots in ControllerNS (over the files, which
	// give the values until then and are all there is without it).
	WatchConfig bool
	// WatchSyncTimeout bounds the wait for the ConfigMaps' first listing.
	WatchSyncTimeout time.Duration
	// Bound, when set, is told the webhook and admin addresses once both
	// are bound (with port 0 the system picks them).
	Bound func(addr, adminAddr string)
}

// NewInjectorCommand returns `weft-controller injector`.
func NewInjectorCommand(log *slog.Logger) *cobra.Command {
	o := InjectorOptions{}
	cmd := &cobra.Command{
		Use:   "injector",
		Short: "Serve the proxy-injector admission webhook",
		Long: `Runs the mutating admission webhook that adds the proxy to pods whose pod template or
namespace carries linkerd.io/inject: enabled (or ingress), and normalises Services'
config.linkerd.io/opaque-ports. It answers AdmissionReview v1 over TLS at / and always
admits: what it does not inject passes unchanged, with an Event "Skipped" on the owner when
injection was asked for but refused. The serving certificate is re-read when its files change
(cert-manager rotation). The values (linkerd-config's values key) and the trust anchors
(linkerd-identity-trust-roots' ca-bundle.crt) are followed in the control plane's namespace
as they change, so pods created after a change get it without a restart; an update that does
not parse is refused (a Warning Event on the ConfigMap, the metric
proxy_injector_config_reloads_total{result="rejected"}) and the last good values stay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunInjector(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.StringVar(&o.ControllerNS, "controller-namespace", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
	f.StringVar(&o.Values, "values", compat.ConfigValuesPath, "the chart's rendered values (linkerd-config) at start; empty for the defaults")
	f.StringVar(&o.TrustAnchors, "trust-anchors-file", compat.TrustRootsPath, "the trust anchors given to proxies at start; empty for the values' identityTrustAnchorsPEM")
	f.BoolVar(&o.WatchConfig, "watch-config", true, "follow the ConfigMaps linkerd-config and linkerd-identity-trust-roots in --controller-namespace (they win over the files)")
	f.DurationVar(&o.WatchSyncTimeout, "watch-sync-timeout", 30*time.Second, "how long to wait for the first listing of those ConfigMaps")
	f.StringVar(&o.TLSCert, "tls-cert", compat.InjectorTLSCertPath, "serving certificate")
	f.StringVar(&o.TLSKey, "tls-key", compat.InjectorTLSKeyPath, "serving key")
	f.StringVar(&o.Addr, "addr", ":8443", "webhook listen address (HTTPS)")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9995", "admin listen address (/metrics, /ready, /live)")
	return cmd
}

// injectorValues is inject.BuildValues for the injector, which also refuses
// anchors that are not PEM certificates: every pod it admits would get them.
func injectorValues(valuesYAML []byte, anchorsPEM, controllerNS string) (inject.Values, error) {
	v, err := inject.BuildValues(valuesYAML, anchorsPEM, controllerNS)
	if err != nil {
		return v, err
	}
	if _, err := pki.ParseCertificates([]byte(v.IdentityTrustAnchorsPEM)); err != nil {
		return v, fmt.Errorf("trust anchors: %w", err)
	}
	return v, nil
}

// RunInjector serves until ctx ends, or until one of its servers fails
// (returned as an error naming it).
func RunInjector(ctx context.Context, o InjectorOptions, log *slog.Logger) error {
	valuesYAML, anchors, err := inject.ReadValuesFiles(o.Values, o.TrustAnchors)
	if err != nil {
		return err
	}
	values, err := injectorValues(valuesYAML, anchors, o.ControllerNS)
	if err != nil {
		return err
	}
	certs := &certReloader{cert: o.TLSCert, key: o.TLSKey}
	if _, err := certs.get(nil); err != nil {
		return err
	}
	client, cluster, err := webhookCluster(ctx, o.Kubeconfig)
	if err != nil {
		return err
	}
	record, stopEvents := injector.EventRecorder(client)
	defer stopEvents()
	reg := newRegistry()
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "proxy_inject_admission_duration_seconds",
		Help:    "Time to answer an admission review, by result (injected, skipped, normalised).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .5},
	}, []string{"result"})
	reg.MustRegister(latency)
	live := injector.NewLiveValues(values)
	if o.WatchConfig {
		w := newConfigWatcher(client, o.ControllerNS, valuesYAML, anchors, live, record, reg, log)
		if err := w.start(ctx, o.WatchSyncTimeout); err != nil {
			return err
		}
		values = live.Load()
	}
	wh := &injector.Webhook{Values: live, CreatedBy: "weft/proxy-injector " + version.Version, Cluster: cluster,
		Events: record, Log: log, Observe: func(d time.Duration, result string) { latency.WithLabelValues(result).Observe(d.Seconds()) },
		VizNamespace: cluster.VizNamespace}

	ls, err := serving.Listen(o.Addr, o.AdminAddr)
	if err != nil {
		return fmt.Errorf("injector: %w", err)
	}
	l, al := ls[0], ls[1]
	if o.Bound != nil {
		o.Bound(l.Addr().String(), al.Addr().String())
	}
	log.Info("injector started", "addr", l.Addr().String(), "admin-addr", al.Addr().String(),
		"proxy-image", values.Proxy.Image.Name, "version", values.Version, "watch-config", o.WatchConfig)
	return serveWebhook(ctx, log, "injector", wh, certs, l, al, reg)
}

// serveWebhook serves component's webhook ("injector", "jaeger-injector")
// over TLS on l and its admin server on adminL until ctx ends (nil) or
// either fails (an error naming it).
func serveWebhook(ctx context.Context, log *slog.Logger, component string, wh http.Handler, certs *certReloader, l, adminL net.Listener, reg *prometheus.Registry) error {
	var stopping atomic.Bool
	adm := adminServer(log, reg, func() bool { return !stopping.Load() })
	srv := &http.Server{Handler: wh, TLSConfig: &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}}
	return serving.Run(ctx, func(error) { stopping.Store(true) },
		serving.HTTP(component+" webhook server", l, srv, 5*time.Second),
		serving.HTTP(component+" admin server", adminL, adm, 0))
}

// certReloader serves the key pair on disk, re-read when either file's
// modification time changes (checked at most once a second).
type certReloader struct {
	cert, key string
	mu        sync.Mutex
	current   *tls.Certificate
	stamp     [2]time.Time
	checked   time.Time
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && time.Since(c.checked) < time.Second {
		return c.current, nil
	}
	c.checked = time.Now()
	var stamp [2]time.Time
	for i, p := range []string{c.cert, c.key} {
		st, err := os.Stat(p)
		if err != nil {
			if c.current != nil {
				return c.current, nil // mid-rotation: keep serving the last good pair
			}
			return nil, fmt.Errorf("serving certificate: %w", err)
		}
		stamp[i] = st.ModTime()
	}
	if c.current != nil && stamp == c.stamp {
		return c.current, nil
	}
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		if c.current != nil {
			return c.current, nil
		}
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	c.current, c.stamp = &pair, stamp
	return c.current, nil
}

// webhookCluster is what an injection webhook reads of the cluster
// (namespaces, owners' metadata) and its clientset, from kubeconfig ("":
// in-cluster).
func webhookCluster(ctx context.Context, kubeconfig string) (kubernetes.Interface, *injector.KubeCluster, error) {
	cfg, err := kubeclient.Config(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	cluster, err := injector.NewKubeCluster(client, meta, ctx.Done())
	if err != nil {
		return nil, nil, err
	}
	return client, cluster, nil
}
