package inboundpolicy

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/policyclient"
)

// Server is the InboundPolicies gRPC service over an Index.
type Server struct {
	policyv1.UnimplementedInboundPoliciesServer
	idx    *Index
	log    *slog.Logger
	synced func() bool
}

// NewServer returns the service. synced (nil: always) says whether the
// index holds everything yet: until it does, streams send nothing (a
// policy computed from a partial view could admit what a Server not yet
// seen forbids), and proxies apply their own default policy.
func NewServer(idx *Index, synced func() bool, log *slog.Logger) *Server {
	if synced == nil {
		synced = func() bool { return true }
	}
	return &Server{idx: idx, log: log, synced: synced}
}

// Watch streams the port's policy, sending it again whenever it changes.
// While the pod is unknown (not yet in the informer's cache) nothing is
// sent: the proxy applies its own default policy meanwhile.
func (s *Server) Watch(req *policyv1.InboundRequest, stream policyv1.InboundPolicies_WatchServer) error {
	ns, pod, ok := strings.Cut(req.GetWorkload(), ":")
	if !ok || ns == "" || pod == "" {
		return status.Errorf(codes.InvalidArgument, "workload %q: want namespace:pod", req.GetWorkload())
	}
	if req.GetPort() == 0 || req.GetPort() > 65535 {
		return status.Errorf(codes.InvalidArgument, "port %d out of range", req.GetPort())
	}
	port := uint16(req.GetPort())
	for !s.synced() {
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	var last *policyv1.InboundPolicy
	for {
		changed := s.idx.Changed()
		pp, err := s.idx.Policy(ns, pod, port)
		switch {
		case errors.Is(err, ErrNoPod):
		case err != nil:
			return status.Error(codes.Internal, fmt.Sprintf("computing policy: %v", err))
		default:
			m := policyclient.ToProto(pp)
			if last == nil || !proto.Equal(m, last) {
				if err := stream.Send(m); err != nil {
					return err
				}
				last = m
				s.log.Debug("inbound policy sent", "workload", req.GetWorkload(), "port", port, "server", pp.Server.Name)
			}
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}
