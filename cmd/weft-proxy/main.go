// Command weft-proxy is Weft's sidecar proxy. With no flags and no
// environment it listens on the standard ports (outbound 127.0.0.1:4140,
// inbound 0.0.0.0:4143, admin 0.0.0.0:4191, control 0.0.0.0:4190) and
// forwards every connection redirected by iptables to its original
// destination. See docs/proxy.md for every flag and environment variable.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/admin"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/controlclient"
	"github.com/weftmesh/weft/internal/discovery"
	"github.com/weftmesh/weft/internal/identity/certify"
	"github.com/weftmesh/weft/internal/identity/pki"
	"github.com/weftmesh/weft/internal/metrics"
	"github.com/weftmesh/weft/internal/proxy"
	"github.com/weftmesh/weft/internal/residency"
	"github.com/weftmesh/weft/internal/target"
	"github.com/weftmesh/weft/internal/version"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		var ue usageError
		switch {
		case errors.Is(err, flag.ErrHelp):
			os.Exit(0)
		case errors.As(err, &ue):
			os.Exit(2) // the flag package has already said what is wrong
		}
		log.Fatalf("weft-proxy: %v", err)
	}
}

// usageError is a command-line mistake already reported by the flag package.
type usageError struct{ error }

func run(args []string) error {
	cfg := proxy.DefaultConfig()
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return err
	}
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: weft-proxy [flags]\n\nWeft's sidecar proxy. Flags override the environment (docs/proxy.md).\n\n")
		fs.PrintDefaults()
	}
	proxy.Flags(fs, &cfg)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	if *showVersion {
		fmt.Println(version.Version)
		return nil
	}

	lvl, err := admin.ParseLevel(cfg.LogLevel)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	level := new(slog.LevelVar)
	level.Set(lvl)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if os.Getenv("GOMAXPROCS") == "" {
		available := runtime.GOMAXPROCS(0) // Go's default
		runtime.GOMAXPROCS(cfg.Workers.Cores(available))
		logger.Info("cores", "using", runtime.GOMAXPROCS(0), "available", available)
	}
	reg := metrics.New(metrics.Options{ConstLabels: cfg.MetricsLabels, IdleTimeout: cfg.MetricsIdleTimeout, BuildVersion: version.Version})
	ctx, stopIdentity := context.WithCancel(context.Background())
	defer stopIdentity()
	id, err := newIdentity(ctx, cfg.Identity, logger)
	if err != nil {
		return err
	}
	// One connection to the policy controller serves both outbound routes
	// and inbound policies.
	var pconn *grpc.ClientConn
	if cfg.PolicyAddr != "" {
		if pconn, err = dialControl(cfg.PolicyAddr, cfg.PolicyName, compat.EnvPolicySvcName, id, logger); err != nil {
			return fmt.Errorf("policy service: %w", err)
		}
		defer pconn.Close()
	}
	var disc target.Resolver
	if cfg.DestinationAddr != "" {
		conn, err := dialControl(cfg.DestinationAddr, cfg.DestinationName, compat.EnvDestinationSvcName, id, logger)
		if err != nil {
			return fmt.Errorf("destination service: %w", err)
		}
		defer conn.Close()
		opts := discovery.Options{Log: logger, IdleTimeout: cfg.DiscoveryIdleTimeout, ContextToken: cfg.DestinationContext}
		if pconn != nil {
			opts.Policy = policyv1.NewOutboundPoliciesClient(pconn)
		}
		disc = discovery.New(ctx, destinationv1.NewDestinationClient(conn), opts)
	}
	policies, err := newPolicies(ctx, pconn, cfg.Policy, logger)
	if err != nil {
		return err
	}
	p, err := proxy.New(cfg, proxy.Options{Log: logger, Level: level, Metrics: reg, Identity: id, Discovery: disc, Policies: policies})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	if cfg.ReleaseStartupPages {
		// Once serving (with identity: once the first certificate is
		// issued), what start-up alone used of the binary need not stay
		// mapped (internal/residency).
		go func() {
			if id != nil {
				select {
				case <-id.Ready():
				case <-p.Done():
					return
				}
			}
			if spans, err := residency.ReleaseExecutable(); err != nil {
				logger.Warn("could not release the executable's start-up pages", "err", err)
			} else {
				logger.Info("released the executable's start-up pages", "mappings", len(spans))
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		logger.Info("signal received", "signal", s.String())
	case <-p.Done():
	}
	signal.Stop(sig)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace+5*time.Second)
	defer cancel()
	return p.Shutdown(shutdownCtx) // with the error of a server that stopped on its own

}

// dialControl connects to a control-plane service: mTLS verified against
// name when the proxy has an identity and name is set, else plaintext,
// said loudly.
func dialControl(addr, name, nameEnv string, id *certify.Manager, log *slog.Logger) (*grpc.ClientConn, error) {
	switch {
	case id == nil:
		log.Warn("identity is disabled: the connection to the control plane is PLAINTEXT (unauthenticated, unencrypted)", "addr", addr)
	case name == "":
		log.Warn("no control-plane identity configured: the connection to the control plane is PLAINTEXT (unauthenticated, unencrypted)", "addr", addr, "set", nameEnv)
	default:
		log.Info("control plane reached over mTLS", "addr", addr, "identity", name)
	}
	return controlclient.Dial(addr, name, id)
}

// newIdentity starts obtaining the proxy's certificate from the identity
// service (over TLS verified against the trust anchors), or returns nil when
// identity is disabled.
func newIdentity(ctx context.Context, c proxy.IdentityConfig, log *slog.Logger) (*certify.Manager, error) {
	if !c.Enabled() {
		log.Warn("identity is disabled: traffic between proxies is not mTLS")
		return nil, nil
	}
	anchors, _, err := pki.AnchorPool([]byte(c.TrustAnchorsPEM))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", compat.EnvTrustAnchors, err)
	}
	creds := credentials.NewTLS(&tls.Config{ServerName: c.SvcName, RootCAs: anchors, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient(c.SvcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("identity service %s: %w", c.SvcAddr, err)
	}
	mgr, err := certify.New(certify.Config{Identity: c.LocalName, TokenPath: c.TokenFile,
		Client: identityv1.NewIdentityClient(conn), Anchors: anchors, Log: log})
	if err != nil {
		conn.Close()
		return nil, err
	}
	go func() {
		mgr.Run(ctx)
		conn.Close()
	}()
	return mgr, nil
}
