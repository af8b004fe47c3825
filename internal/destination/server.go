package destination

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	destinationv1 "github.com/weftmesh/weft/api/destination/v1"
)

// Server implements the Destination gRPC service over a Backend.
type Server struct {
	destinationv1.UnimplementedDestinationServer
	backend Backend
	log     *slog.Logger
}

// NewServer returns a Destination server.
func NewServer(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{backend: b, log: log}
}

// latest is a one-slot mailbox: a slow stream only ever sends the newest
// snapshot, never a backlog.
type latest struct {
	mu     sync.Mutex
	snap   Snapshot
	have   bool
	notify chan struct{}
}

func newLatest() *latest { return &latest{notify: make(chan struct{}, 1)} }

func (l *latest) put(s Snapshot) {
	l.mu.Lock()
	l.snap, l.have = s, true
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

func (l *latest) take() (Snapshot, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.snap, l.have
	l.have = false
	return s, ok
}

// Watch streams the target's endpoints until the client goes away.
func (s *Server) Watch(req *destinationv1.WatchRequest, stream destinationv1.Destination_WatchServer) error {
	target := req.GetTarget()
	if target == "" {
		return status.Error(codes.InvalidArgument, "target is required (service authority or IP:port)")
	}
	zoneOf := s.callerZone(target, req.GetContextToken())
	box := newLatest()
	cancel, err := s.backend.Subscribe(target, box.put)
	if err != nil {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("watching %s: %v", target, err))
	}
	defer cancel()
	var d Differ
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-box.notify:
		}
		snap, ok := box.take()
		if !ok {
			continue
		}
		// Filtered per stream: callers in different zones get different
		// sets, and the differ sends each its own changes.
		diff, changed := d.Next(FilterByZone(snap, zoneOf()))
		if !changed {
			continue
		}
		for _, u := range ToUpdates(diff) {
			if err := stream.Send(u); err != nil {
				return err
			}
		}
	}
}

// callerZone returns how to look up, at each snapshot, the zone of the
// node the context token names; it answers "" (no topology filtering) when
// the token is empty or malformed, names no node, or the backend does not
// know zones.
func (s *Server) callerZone(target, token string) func() string {
	none := func() string { return "" }
	caller, err := ParseContextToken(token)
	if err != nil {
		s.log.Debug("ignoring the context token: no topology filtering", "target", target, "token", truncate(token, 200), "error", err)
		return none
	}
	zr, ok := s.backend.(ZoneResolver)
	if !ok || caller.NodeName == "" {
		return none
	}
	s.log.Debug("watch with topology hints", "target", target, "node", caller.NodeName,
		"namespace", caller.Namespace, "pod", caller.Pod, "zone", zr.ZoneOf(caller.NodeName))
	return func() string { return zr.ZoneOf(caller.NodeName) }
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// WatchProfile streams the target's profile: at once, then after every
// change when the backend follows changes (ServiceProfiles); unchanged
// profiles are not resent.
func (s *Server) WatchProfile(req *destinationv1.WatchRequest, stream destinationv1.Destination_WatchProfileServer) error {
	ps, ok := s.backend.(ProfileSubscriber)
	if !ok {
		p, err := s.backend.Profile(req.GetTarget())
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if err := stream.Send(profileToWire(p)); err != nil {
			return err
		}
		<-stream.Context().Done()
		return nil
	}
	latest := make(chan *destinationv1.Profile, 1)
	cancel, err := ps.SubscribeProfile(req.GetTarget(), func(p Profile) {
		w := profileToWire(p)
		select { // keep only the newest
		case <-latest:
		default:
		}
		latest <- w
	})
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	defer cancel()
	var last *destinationv1.Profile
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case p := <-latest:
			if last != nil && proto.Equal(last, p) {
				continue
			}
			if err := stream.Send(p); err != nil {
				return err
			}
			last = p
		}
	}
}

func profileToWire(p Profile) *destinationv1.Profile {
	out := &destinationv1.Profile{FullyQualifiedName: p.FullyQualifiedName, OpaqueProtocol: p.Opaque}
	for _, r := range p.Routes {
		wr := &destinationv1.Route{Name: r.Name, IsRetryable: r.Retryable,
			Condition: &destinationv1.RequestMatch{Method: r.Method, PathRegex: r.PathRegex}}
		if r.Timeout > 0 {
			wr.Timeout = durationpb.New(r.Timeout)
		}
		for _, c := range r.Classes {
			wr.ResponseClasses = append(wr.ResponseClasses, &destinationv1.ResponseClass{StatusMin: c.StatusMin, StatusMax: c.StatusMax, IsFailure: c.Failure})
		}
		out.Routes = append(out.Routes, wr)
	}
	if b := p.RetryBudget; b != nil {
		out.RetryBudget = &destinationv1.RetryBudget{RetryRatio: b.Ratio, MinRetriesPerSecond: b.MinPerSecond}
		if b.TTL > 0 {
			out.RetryBudget.Ttl = durationpb.New(b.TTL)
		}
	}
	return out
}

// ToUpdates translates a diff into wire messages: removals first, then
// additions, so a changed endpoint is replaced in place.
func ToUpdates(d Diff) []*destinationv1.Update {
	if d.NoEndpoints {
		return []*destinationv1.Update{{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: d.Exists}}}}
	}
	var out []*destinationv1.Update
	if len(d.Remove) > 0 {
		out = append(out, &destinationv1.Update{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.RemoveSet{Addrs: d.Remove}}})
	}
	if len(d.Add) > 0 || d.Labels != nil {
		add := &destinationv1.AddSet{MetricLabels: d.Labels}
		eps := append([]Endpoint(nil), d.Add...)
		sort.Slice(eps, func(i, j int) bool { return eps[i].Addr < eps[j].Addr })
		for _, e := range eps {
			add.Endpoints = append(add.Endpoints, toWire(e))
		}
		out = append(out, &destinationv1.Update{Kind: &destinationv1.Update_Add{Add: add}})
	}
	return out
}

func toWire(e Endpoint) *destinationv1.Endpoint {
	w := e.Weight
	if w == 0 {
		w = 10000
	}
	out := &destinationv1.Endpoint{Addr: e.Addr, Weight: w, MetricLabels: e.Labels, Zone: e.Zone, Terminating: e.Terminating, ForZones: e.ForZones,
		Meshed: e.Meshed, ProtocolHint: &destinationv1.ProtocolHint{Protocol: destinationv1.ProtocolHint_Protocol(e.Protocol)}}
	if e.OpaqueTransportPort > 0 {
		out.ProtocolHint.OpaqueTransport = &destinationv1.OpaqueTransport{InboundPort: e.OpaqueTransportPort}
	}
	if e.Identity != "" {
		out.TlsIdentity = &destinationv1.TLSIdentity{DnsName: e.Identity}
	}
	return out
}
