package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/identity/selfcert"
)

// ServingIdentity are the flags of a controller that proxies reach
// (destination, policy): by default it serves gRPC over mTLS with its own
// certificate from the identity service (selfcert); --plaintext turns that
// off explicitly. Empty names take the control plane's defaults, built from
// the namespace, cluster domain and trust domain.
type ServingIdentity struct {
	Plaintext    bool
	Identity     string // this controller's identity (default: the linkerd-destination ServiceAccount's)
	IdentityAddr string // the identity service
	IdentityName string // the identity the identity service presents
	TokenFile    string
	AnchorsFile  string
}

func (s *ServingIdentity) flags(f *pflag.FlagSet) {
	f.BoolVar(&s.Plaintext, "plaintext", false, "serve gRPC in plaintext, without a certificate (proxies are not authenticated, traffic is not encrypted)")
	f.StringVar(&s.Identity, "tls-identity", "", "this controller's own identity (default: the linkerd-destination ServiceAccount's, <sa>.<ns>.serviceaccount.identity.<ns>.<trust-domain>)")
	f.StringVar(&s.IdentityAddr, "identity-addr", "", "identity service host:port (default: the linkerd-identity-headless Service)")
	f.StringVar(&s.IdentityName, "identity-svc-name", "", "the identity the identity service must present (default: the linkerd-identity ServiceAccount's)")
	f.StringVar(&s.TokenFile, "identity-token-file", compat.IdentityTokenFile, "ServiceAccount token (audience identity.l5d.io) sent to the identity service, re-read before each request")
	f.StringVar(&s.AnchorsFile, "identity-trust-anchors-file", compat.TrustRootsPath, "PEM trust anchors: verify the identity service and every client")
}

// servingTLS is what a controller serves with: gRPC server options, a
// readiness condition and metrics.
type servingTLS struct {
	opts       []grpc.ServerOption
	ready      func() bool
	collectors []prometheus.Collector
	identity   string
}

// destinationIdentity is the identity of the linkerd-destination
// ServiceAccount, which the destination and policy controllers run as.
func destinationIdentity(ns, trustDomain string) string {
	return fmt.Sprintf(compat.DestinationServiceNameFormat, ns, ns, trustDomain)
}

// start begins obtaining the certificate (renewed until ctx ends) and
// returns the serving options; with --plaintext, none. self is the
// identity used when --tls-identity is not given; ns is the control
// plane's namespace.
func (s ServingIdentity) start(ctx context.Context, self, ns, clusterDomain, trustDomain string, log *slog.Logger) (servingTLS, error) {
	if s.Plaintext {
		log.Warn("--plaintext: gRPC is served WITHOUT TLS: proxies are not authenticated and discovery is readable on the wire")
		return servingTLS{ready: func() bool { return true }}, nil
	}
	if s.Identity == "" {
		s.Identity = self
	}
	if s.IdentityAddr == "" {
		s.IdentityAddr = fmt.Sprintf(compat.IdentityServiceAddrFormat, ns, clusterDomain)
	}
	if s.IdentityName == "" {
		s.IdentityName = fmt.Sprintf(compat.IdentityServiceNameFormat, ns, ns, trustDomain)
	}
	if s.AnchorsFile == "" {
		return servingTLS{}, errors.New("--identity-trust-anchors-file is required (or --plaintext)")
	}
	anchors, err := os.ReadFile(s.AnchorsFile)
	if err != nil {
		return servingTLS{}, fmt.Errorf("trust anchors (or --plaintext): %w", err)
	}
	src, err := selfcert.New(selfcert.Config{Identity: s.Identity, IdentityAddr: s.IdentityAddr, IdentityName: s.IdentityName,
		TokenFile: s.TokenFile, AnchorsPEM: anchors, Log: log})
	if err != nil {
		return servingTLS{}, err
	}
	go src.Run(ctx)
	return servingTLS{opts: []grpc.ServerOption{grpc.Creds(src.ServerCredentials())}, ready: src.HasCertificate,
		collectors: src.Collectors(), identity: s.Identity}, nil
}
