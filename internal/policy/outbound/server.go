package outbound

import (
	"encoding/json"
	"log/slog"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	policyv1 "github.com/weftmesh/weft/api/policy/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/routeapi"
)

// Server implements policyv1.OutboundPoliciesServer over an Index.
type Server struct {
	policyv1.UnimplementedOutboundPoliciesServer
	ix  *Index
	log *slog.Logger
}

// NewServer returns the OutboundPolicies service of ix.
func NewServer(ix *Index, log *slog.Logger) *Server { return &Server{ix: ix, log: log} }

// Watch streams the target's table: the current one first, then each
// change, until the caller goes away.
func (s *Server) Watch(req *policyv1.OutboundRequest, stream policyv1.OutboundPolicies_WatchServer) error {
	if req.GetTarget() == "" {
		return status.Error(codes.InvalidArgument, "target is required")
	}
	k := WatchKey{Target: req.GetTarget(), ClientNS: clientNS(req.GetContextToken())}
	ch, cancel := s.ix.Watch(k)
	defer cancel()
	for {
		if err := stream.Send(routeapi.Encode(s.ix.Current(k))); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-ch:
		}
	}
}

// clientNS reads the caller's namespace from its context token (Linkerd's
// JSON, or the older "ns:<namespace>").
func clientNS(token string) string {
	var c compat.DestinationContext
	if err := json.Unmarshal([]byte(token), &c); err == nil {
		return c.Namespace
	}
	ns, _ := strings.CutPrefix(token, compat.LegacyContextTokenPrefix)
	if ns == token {
		return ""
	}
	return ns
}
