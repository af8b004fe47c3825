// Package controller holds the control plane's components as runnable
// commands (identity, destination, injector, policy; viz's metrics-api,
// web and tap; the jaeger injector), wired from flags to the packages that
// do the work, each serving through internal/serving with its admin port
// from internal/admin. One weft-controller image runs each as a
// subcommand.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity"
	"github.com/weftmesh/weft/internal/identity/kube"
	"github.com/weftmesh/weft/internal/identity/localca"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/identity/statictoken"
	"github.com/weftmesh/weft/internal/kubeclient"
)

// IdentityOptions are the identity command's flags.
type IdentityOptions struct {
	Kubeconfig     string
	Namespace      string
	TrustDomain    string
	AnchorsFile    string
	IssuerScheme   string
	ExternalCA     bool
	Lifetime       time.Duration
	ClockSkew      time.Duration
	Addr           string
	AdminAddr      string
	StaticTokens   string // hosts without Kubernetes: token file ...
	IssuerCertFile string // ... and issuer files instead of the Secret
	IssuerKeyFile  string
	Trace          TraceOptions // a server span per gRPC call when a collector is set
}

// NewIdentityCommand returns `weft-controller identity`.
func NewIdentityCommand(log *slog.Logger) *cobra.Command {
	o := IdentityOptions{}
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Run the mesh's certificate authority (the Certify RPC)",
		Long: `Runs the identity service: proxies send their ServiceAccount token and a CSR,
and receive a short-lived certificate for <sa>.<ns>.serviceaccount.identity.<ns>.<trust-domain>.

With Kubernetes, tokens are checked with TokenReview and the issuer is read from the
linkerd-identity-issuer Secret (reloaded when cert-manager rotates it). Without Kubernetes,
--static-tokens, --issuer-cert and --issuer-key replace both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return RunIdentity(cmd.Context(), o, log) },
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	f.StringVar(&o.Namespace, "controller-namespace", compat.DefaultControlPlaneNamespace, "the control plane's namespace")
	f.StringVar(&o.TrustDomain, "identity-trust-domain", "cluster.local", "trust domain of proxy identities")
	f.StringVar(&o.AnchorsFile, "identity-trust-anchors-file", "", "PEM file of trust anchors (identityTrustAnchorsPEM); not with --external-ca")
	f.StringVar(&o.IssuerScheme, "identity-issuer-scheme", kube.SchemeLinkerd, "issuer Secret layout: linkerd.io/tls or kubernetes.io/tls")
	f.BoolVar(&o.ExternalCA, "external-ca", false, "read trust anchors from ConfigMap linkerd-identity-trust-roots (identity.externalCA)")
	f.DurationVar(&o.Lifetime, "identity-issuance-lifetime", 24*time.Hour, "lifetime of proxy certificates")
	f.DurationVar(&o.ClockSkew, "identity-clock-skew-allowance", 20*time.Second, "how far NotBefore is backdated")
	f.StringVar(&o.Addr, "addr", ":8080", "gRPC listen address")
	f.StringVar(&o.AdminAddr, "admin-addr", ":9990", "admin listen address (/metrics, /ready, /live)")
	f.StringVar(&o.StaticTokens, "static-tokens", "", "token file (TOKEN NAMESPACE/SERVICEACCOUNT per line) instead of TokenReview")
	f.StringVar(&o.IssuerCertFile, "issuer-cert", "", "issuer certificate PEM instead of the Secret (with --static-tokens)")
	f.StringVar(&o.IssuerKeyFile, "issuer-key", "", "issuer key PEM instead of the Secret (with --static-tokens)")
	o.Trace.flags(f, compat.IdentityComponent)
	return cmd
}

// RunIdentity serves until ctx ends.
func RunIdentity(ctx context.Context, o IdentityOptions, log *slog.Logger) error {
	if o.IssuerScheme != kube.SchemeLinkerd && o.IssuerScheme != kube.SchemeKubernetes {
		return fmt.Errorf("--identity-issuer-scheme %q: want %s or %s", o.IssuerScheme, kube.SchemeLinkerd, kube.SchemeKubernetes)
	}
	var anchorsPEM []byte
	if o.AnchorsFile != "" {
		b, err := os.ReadFile(o.AnchorsFile)
		if err != nil {
			return fmt.Errorf("trust anchors: %w", err)
		}
		if _, _, err := pki.AnchorPool(b); err != nil {
			return fmt.Errorf("trust anchors %s: %w", o.AnchorsFile, err)
		}
		anchorsPEM = b
	} else if !o.ExternalCA {
		return errors.New("--identity-trust-anchors-file is required (or --external-ca)")
	}
	reg := newRegistry()
	svc := identity.NewService(identity.ServiceConfig{Lifetime: o.Lifetime, ControlPlaneNS: o.Namespace, TrustDomain: o.TrustDomain, Log: log})
	if o.StaticTokens != "" {
		if err := staticIdentity(svc, o, anchorsPEM, reg); err != nil {
			return err
		}
	} else if err := kubeIdentity(ctx, svc, o, anchorsPEM, reg, log); err != nil {
		return err
	}
	self := identity.Name{ServiceAccount: compat.IdentityComponent, Namespace: o.Namespace, ControlPlaneNS: o.Namespace, TrustDomain: o.TrustDomain}
	traceOpts, stopTrace, err := serverTracing(o.Trace, reg, log)
	if err != nil {
		return err
	}
	defer stopTrace()
	srv, initMetrics := newGRPCServer(reg, append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(svc.ServingTLS(self)))}, traceOpts...)...)
	identityv1.RegisterIdentityServer(srv, svc)
	initMetrics()
	return serve(ctx, component{name: "identity", addr: o.Addr, adminAddr: o.AdminAddr, srv: srv, metrics: reg,
		ready: func() bool { return svc.Issuer() != nil }, grace: 10 * time.Second, log: log,
		attrs: []any{"self", self.DNSName()}})
}

func staticIdentity(svc *identity.Service, o IdentityOptions, anchorsPEM []byte, reg *prometheus.Registry) error {
	if o.IssuerCertFile == "" || o.IssuerKeyFile == "" || anchorsPEM == nil {
		return errors.New("--static-tokens needs --issuer-cert, --issuer-key and --identity-trust-anchors-file")
	}
	v, err := statictoken.Load(o.StaticTokens, o.Namespace, o.TrustDomain)
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(o.IssuerCertFile)
	if err != nil {
		return fmt.Errorf("issuer certificate: %w", err)
	}
	key, err := os.ReadFile(o.IssuerKeyFile)
	if err != nil {
		return fmt.Errorf("issuer key: %w", err)
	}
	anchors, _, err := pki.AnchorPool(anchorsPEM)
	if err != nil {
		return err
	}
	ca, err := localca.New(crt, key, anchors, localca.Options{ClockSkewAllowance: o.ClockSkew})
	if err != nil {
		return err
	}
	// The same gauge as the Kubernetes issuer watcher's, for the dashboard.
	if certs, err := pki.ParseCertificates(crt); err == nil && len(certs) > 0 {
		expiry := prometheus.NewGauge(prometheus.GaugeOpts{Name: "identity_issuer_expiration_timestamp_seconds",
			Help: "When the issuer certificate in use expires (seconds since the UNIX epoch)."})
		expiry.Set(float64(certs[0].NotAfter.Unix()))
		reg.MustRegister(expiry)
	}
	svc.SetValidator(v)
	svc.SetIssuer(ca)
	return nil
}

func kubeIdentity(ctx context.Context, svc *identity.Service, o IdentityOptions, anchorsPEM []byte, reg *prometheus.Registry, log *slog.Logger) error {
	client, err := kubeclient.Clientset(o.Kubeconfig)
	if err != nil {
		return err
	}
	svc.SetValidator(kube.NewTokenReviewer(client, o.Namespace, o.TrustDomain))
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events(o.Namespace)})
	w := &kube.IssuerWatcher{Client: client, Namespace: o.Namespace, Scheme: o.IssuerScheme, AnchorsPEM: anchorsPEM,
		ExternalCA: o.ExternalCA, Target: svc, Log: log, Skew: o.ClockSkew,
		Recorder: bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: compat.IdentityComponent})}
	reg.MustRegister(w.Collectors()...)
	return w.Start(ctx)
}
