package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/weftmesh/weft/api/identity/v1"
	"github.com/weftmesh/weft/internal/compat"
)

// Service implements the Certify RPC over a Validator and a swappable Issuer.
type Service struct {
	identityv1.UnimplementedIdentityServer

	validator   atomic.Pointer[validatorBox]
	issuer      atomic.Pointer[issuerBox]
	lifetime    time.Duration
	controlNS   string
	trustDomain string
	log         *slog.Logger
}

type issuerBox struct{ Issuer }

type validatorBox struct{ Validator }

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Validator      Validator
	Issuer         Issuer        // may be nil until SetIssuer
	Lifetime       time.Duration // identity.issuer.issuanceLifetime, default 24h
	ControlPlaneNS string        // default "linkerd"
	TrustDomain    string        // default "cluster.local"
	Log            *slog.Logger
}

// NewService returns a Certify server.
func NewService(c ServiceConfig) *Service {
	if c.Lifetime <= 0 {
		c.Lifetime = 24 * time.Hour
	}
	if c.ControlPlaneNS == "" {
		c.ControlPlaneNS = compat.DefaultControlPlaneNamespace
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	s := &Service{lifetime: c.Lifetime, controlNS: c.ControlPlaneNS, trustDomain: c.TrustDomain, log: c.Log}
	if c.Validator != nil {
		s.SetValidator(c.Validator)
	}
	if c.Issuer != nil {
		s.SetIssuer(c.Issuer)
	}
	return s
}

// SetValidator sets how tokens are checked.
func (s *Service) SetValidator(v Validator) { s.validator.Store(&validatorBox{v}) }

// SetIssuer swaps the issuer used for new certificates (issuer rotation).
func (s *Service) SetIssuer(i Issuer) { s.issuer.Store(&issuerBox{i}) }

// Issuer returns the current issuer, or nil.
func (s *Service) Issuer() Issuer {
	if b := s.issuer.Load(); b != nil {
		return b.Issuer
	}
	return nil
}

// Certify validates the caller's token, checks that it proves the requested
// identity, and signs the CSR.
func (s *Service) Certify(ctx context.Context, req *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
	leaf, err := s.certify(ctx, req)
	if err != nil {
		s.log.Info("certify refused", "identity", req.GetIdentity(), "err", err)
		return nil, toStatus(err)
	}
	resp := &identityv1.CertifyResponse{
		LeafCertificate: leaf.Certificate.Raw,
		ValidUntil:      timestamppb.New(leaf.Certificate.NotAfter),
	}
	for _, c := range leaf.Intermediates {
		resp.IntermediateCertificates = append(resp.IntermediateCertificates, c.Raw)
	}
	s.log.Debug("certified", "identity", req.GetIdentity(), "valid_until", leaf.Certificate.NotAfter)
	return resp, nil
}

func (s *Service) certify(ctx context.Context, req *identityv1.CertifyRequest) (*Leaf, error) {
	want, err := ParseName(req.GetIdentity(), s.controlNS, s.trustDomain)
	if err != nil {
		return nil, err
	}
	if len(req.GetToken()) == 0 {
		return nil, fmt.Errorf("%w: no token in the request", ErrUnauthenticated)
	}
	vb := s.validator.Load()
	if vb == nil {
		return nil, fmt.Errorf("%w: no token validator configured", ErrUnavailable)
	}
	got, err := vb.Validate(ctx, req.GetToken())
	if err != nil {
		return nil, err
	}
	if got.ServiceAccount != want.ServiceAccount || got.Namespace != want.Namespace {
		return nil, fmt.Errorf("%w: token is for %s/%s, request is for %s", ErrPermissionDenied,
			got.Namespace, got.ServiceAccount, want.DNSName())
	}
	csr, err := x509.ParseCertificateRequest(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, fmt.Errorf("%w: parsing CSR: %v", ErrInvalidRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature: %v", ErrInvalidRequest, err)
	}
	for _, n := range csr.DNSNames {
		if n != want.DNSName() {
			return nil, fmt.Errorf("%w: CSR names %q, request is for %s", ErrPermissionDenied, n, want.DNSName())
		}
	}
	iss := s.Issuer()
	if iss == nil {
		return nil, ErrUnavailable
	}
	return iss.Issue(ctx, csr, want, s.lifetime)
}

func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, ErrInvalidRequest):
		code = codes.InvalidArgument
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}
