// Package tap is the proxy's side of tap: it observes the HTTP requests the
// proxy forwards and streams their metadata (api/tap/v1) to the tap server
// over mTLS, refusing every other identity. An idle tap costs the proxy one
// atomic load per request; an active one never blocks a request: each watch
// has a fixed-size queue and events that do not fit are dropped and counted.
package tap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
	"github.com/weftmesh/weft/internal/identity/certify"
)

// Metric names (Weft's own; Linkerd's proxy has no tap metrics).
const (
	MetricEventsDropped = "tap_events_dropped_total"
	MetricEventsSent    = "tap_events_sent_total"
	MetricWatches       = "tap_watches"
)

// Defaults.
const (
	DefaultQueue  = 256 // events buffered per watch
	DefaultMaxRPS = 100 // requests tapped per second and watch when the request names none
)

// Config configures a Tap.
type Config struct {
	// Authorized is the only client identity allowed to watch
	// (LINKERD2_PROXY_TAP_SVC_NAME).
	Authorized string
	// TLS is the control port's server configuration: it must require and
	// verify client certificates (certify.Manager.ServerConfig).
	TLS *tls.Config
	// Queue is each watch's event buffer (default DefaultQueue).
	Queue       int
	ConstLabels map[string]string
	Log         *slog.Logger
}

// Tap observes requests for the watches the tap server opens.
type Tap struct {
	cfg     Config
	active  atomic.Int32
	mu      sync.Mutex
	watches atomic.Pointer[[]*watch]

	dropped  prometheus.Counter
	sent     prometheus.Counter
	watching prometheus.Gauge

	srvMu sync.Mutex
	srv   *grpc.Server
}

// New returns an idle Tap.
func New(cfg Config) (*Tap, error) {
	if cfg.Authorized == "" {
		return nil, errors.New("tap: the tap server's identity is required")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cl := prometheus.Labels(cfg.ConstLabels)
	t := &Tap{
		cfg: cfg,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricEventsDropped, ConstLabels: cl,
			Help: "Tap events dropped because the tap client read too slowly."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricEventsSent, ConstLabels: cl,
			Help: "Tap events sent to tap clients."}),
		watching: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricWatches, ConstLabels: cl,
			Help: "Tap watches open on this proxy."}),
	}
	t.watches.Store(&[]*watch{})
	return t, nil
}

// Collectors are the tap's metrics.
func (t *Tap) Collectors() []prometheus.Collector {
	return []prometheus.Collector{t.dropped, t.sent, t.watching}
}

// Active reports whether any watch is open: the only cost of an idle tap.
func (t *Tap) Active() bool { return t.active.Load() > 0 }

// Dropped returns how many events were dropped so far.
func (t *Tap) Dropped() float64 { return counterValue(t.dropped) }

func (t *Tap) add(w *watch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.watches.Load()
	next := append(append(make([]*watch, 0, len(old)+1), old...), w)
	t.watches.Store(&next)
	t.active.Store(int32(len(next)))
	t.watching.Set(float64(len(next)))
}

func (t *Tap) remove(w *watch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.watches.Load()
	next := make([]*watch, 0, len(old))
	for _, o := range old {
		if o != w {
			next = append(next, o)
		}
	}
	t.watches.Store(&next)
	t.active.Store(int32(len(next)))
	t.watching.Set(float64(len(next)))
}

// Serve answers Watch calls on l (the proxy's control listener) over mTLS
// until Stop.
func (t *Tap) Serve(l net.Listener) error {
	if t.cfg.TLS == nil {
		return errors.New("tap: no TLS configuration")
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(t.cfg.TLS)))
	tapv1.RegisterTapServer(srv, &service{t: t})
	t.srvMu.Lock()
	t.srv = srv
	t.srvMu.Unlock()
	if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("tap: %w", err)
	}
	return nil
}

// Stop closes every watch and the listener.
func (t *Tap) Stop() {
	t.srvMu.Lock()
	defer t.srvMu.Unlock()
	if t.srv != nil {
		t.srv.Stop()
	}
}

type service struct {
	tapv1.UnimplementedTapServer
	t *Tap
}

// Watch streams the events of matching requests to the tap server.
func (s *service) Watch(req *tapv1.WatchRequest, stream grpc.ServerStreamingServer[tapv1.Event]) error {
	ctx := stream.Context()
	id := peerIdentity(ctx)
	if id != s.t.cfg.Authorized {
		s.t.cfg.Log.Info("tap refused", "client_id", id, "want", s.t.cfg.Authorized)
		return status.Errorf(codes.PermissionDenied, "tap: client identity %q is not the tap server's (%s)", id, s.t.cfg.Authorized)
	}
	w := newWatch(req, s.t.cfg.Queue)
	s.t.add(w)
	defer s.t.remove(w)
	s.t.cfg.Log.Info("tap started", "client_id", id, "match", req.GetMatch().String(), "max_rps", w.limit.rate)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
			s.t.sent.Inc()
		}
	}
}

// peerIdentity is the verified mTLS identity of the caller.
func peerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	return certify.PeerIdentity(ti.State)
}

// watch is one open Watch call.
type watch struct {
	match  *tapv1.Match
	ch     chan *tapv1.Event
	limit  *bucket
	nextID atomic.Uint64
}

func newWatch(req *tapv1.WatchRequest, queue int) *watch {
	rps := req.GetMaxRps()
	if rps <= 0 {
		rps = DefaultMaxRPS
	}
	return &watch{match: req.GetMatch(), ch: make(chan *tapv1.Event, queue), limit: newBucket(rps)}
}

func (w *watch) matches(r *http.Request, m *Meta) bool {
	mt := w.match
	if mt == nil {
		return true
	}
	if mt.Method != "" && !strings.EqualFold(mt.Method, r.Method) {
		return false
	}
	if mt.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, mt.PathPrefix) {
		return false
	}
	if mt.Authority != "" && !strings.EqualFold(mt.Authority, r.Host) {
		return false
	}
	if mt.Destination != "" && !strings.Contains(m.Destination, mt.Destination) {
		return false
	}
	return true
}

// bucket is a token bucket of one second's worth of requests.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket { return &bucket{rate: rate, tokens: max(rate, 1)} }

func (b *bucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(max(b.rate, 1), b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// send queues ev without ever blocking: a full queue drops it.
func (t *Tap) send(w *watch, ev *tapv1.Event) {
	select {
	case w.ch <- ev:
	default:
		t.dropped.Inc()
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
