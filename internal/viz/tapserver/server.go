// Package tapserver is viz's tap server (weft-controller tap): it finds a
// resource's meshed pods, opens a tap (api/tap/v1) on each pod's proxy over
// mTLS with its own identity, merges the streams and serves them as JSON
// lines (tapapi) to callers that Kubernetes RBAC allows to watch the
// resource's tap subresource (group tap.linkerd.io, as Linkerd's).
package tapserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/tap"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
	"github.com/weftmesh/weft/internal/viz/tapapi"
)

// Identity gives the tap server's client certificate toward a proxy.
type Identity interface {
	// ClientConfig is the mTLS configuration toward a peer that must
	// present serverID (selfcert.Source's, certify.Manager's).
	ClientConfig(serverID string, alpn ...string) *tls.Config
}

// Config configures a Server.
type Config struct {
	Kube     kubernetes.Interface
	Identity Identity
	// ControlPlaneNamespace and TrustDomain make proxies' identities:
	// <sa>.<ns>.serviceaccount.identity.<control plane ns>.<trust domain>.
	ControlPlaneNamespace, TrustDomain string
	// ProxyPort is the proxies' control port (default 4190); ProxyAddr,
	// when set, overrides where a pod's proxy is dialled (tests).
	ProxyPort int
	ProxyAddr func(p *corev1.Pod) string
	// MaxRPS is the default total rate when a request names none (100).
	MaxRPS float64
	Log    *slog.Logger
}

// Server serves taps over HTTP.
type Server struct {
	cfg Config
}

// New returns a tap server.
func New(cfg Config) (*Server, error) {
	if cfg.Kube == nil || cfg.Identity == nil {
		return nil, errors.New("tap server: a Kubernetes client and an identity are required")
	}
	if cfg.ControlPlaneNamespace == "" {
		cfg.ControlPlaneNamespace = compat.DefaultControlPlaneNamespace
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = compat.DefaultIdentityTrustDomain
	}
	if cfg.ProxyPort == 0 {
		cfg.ProxyPort = compat.ControlPort
	}
	if cfg.MaxRPS <= 0 {
		cfg.MaxRPS = tap.DefaultMaxRPS
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Server{cfg: cfg}, nil
}

// proxyID is the identity a pod's proxy presents.
func (s *Server) proxyID(p *corev1.Pod) string {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return fmt.Sprintf("%s.%s.serviceaccount.identity.%s.%s", sa, p.Namespace, s.cfg.ControlPlaneNamespace, s.cfg.TrustDomain)
}

// ServeHTTP answers POST <Path(...)> with the tap's events as JSON lines.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.serve(w, r); err != nil {
		var he *httpError
		status := http.StatusInternalServerError
		if errors.As(err, &he) {
			status = he.status
		}
		s.cfg.Log.Info("tap refused", "path", r.URL.Path, "status", status, "err", err)
		http.Error(w, err.Error(), status)
	}
}

func parsePath(p string) (ns, plural, name string, err error) {
	rest, ok := strings.CutPrefix(p, "/apis/"+tapapi.APIGroup+"/"+tapapi.APIVersion+"/watch/namespaces/")
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case ok && len(parts) == 2 && parts[1] == tapapi.Subresource:
		return parts[0], "namespaces", parts[0], nil
	case ok && len(parts) == 4 && parts[3] == tapapi.Subresource:
		return parts[0], parts[1], parts[2], nil
	}
	return "", "", "", &httpError{http.StatusNotFound, fmt.Sprintf("no such tap path %q: want /apis/%s/%s/watch/namespaces/<ns>[/<resource>/<name>]/tap", p, tapapi.APIGroup, tapapi.APIVersion)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return &httpError{http.StatusMethodNotAllowed, "tap: POST a tap request"}
	}
	ns, plural, name, err := parsePath(r.URL.Path)
	if err != nil {
		return err
	}
	kind, ok := tapapi.KindOfPlural(plural)
	if !ok {
		return &httpError{http.StatusBadRequest, (&metricsapi.UnknownKindError{Kind: plural}).Error()}
	}
	var req tapapi.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return &httpError{http.StatusBadRequest, fmt.Sprintf("tap request body: %v", err)}
	}
	ctx := r.Context()
	user, err := authorize(ctx, s.cfg.Kube, bearer(r), ns, plural, name)
	if err != nil {
		return err
	}
	pods, err := podsOf(ctx, s.cfg.Kube, kind, ns, name)
	if err != nil {
		return err
	}
	var meshedPods []corev1.Pod
	for _, p := range pods {
		if meshed(&p) {
			meshedPods = append(meshedPods, p)
		}
	}
	if len(meshedPods) == 0 {
		return &httpError{http.StatusNotFound, fmt.Sprintf("%s %s in namespace %q has no running meshed pods to tap (%d running)", kind, name, ns, len(pods))}
	}
	toIPs, err := s.destinationIPs(ctx, req, ns)
	if err != nil {
		return err
	}
	s.cfg.Log.Info("tap", "user", user, "resource", plural+"/"+name, "namespace", ns, "pods", len(meshedPods))
	total := req.MaxRPS
	if total <= 0 {
		total = s.cfg.MaxRPS
	}
	match := &tapv1.Match{Method: req.Method, PathPrefix: req.Path, Authority: req.Authority}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()

	events := make(chan tapapi.Event, 256)
	var wg sync.WaitGroup
	for i := range meshedPods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.tapPod(ctx, i, &meshedPods[i], &tapv1.WatchRequest{Match: match, MaxRps: total / float64(len(meshedPods))}, toIPs, events)
		}()
	}
	go func() { wg.Wait(); close(events) }()
	enc := json.NewEncoder(w)
	for ev := range events {
		if err := enc.Encode(&ev); err != nil {
			return nil // the caller went away
		}
		rc.Flush()
	}
	return nil
}

// destinationIPs resolves --to into the pod addresses requests must go to
// (nil: no restriction).
func (s *Server) destinationIPs(ctx context.Context, req tapapi.Request, ns string) (map[string]bool, error) {
	if req.To == "" {
		return nil, nil
	}
	k, name, err := metricsapi.ParseResource(req.To)
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, "--to: " + err.Error()}
	}
	if req.ToNamespace != "" {
		ns = req.ToNamespace
	}
	if k == metricsapi.KindNamespace && name == "" {
		name = ns
	}
	pods, err := podsOf(ctx, s.cfg.Kube, k, ns, name)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	ips := map[string]bool{}
	for _, p := range pods {
		ips[p.Status.PodIP] = true
	}
	return ips, nil
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// tapPod streams one pod's events into out until ctx ends.
func (s *Server) tapPod(ctx context.Context, i int, p *corev1.Pod, req *tapv1.WatchRequest, toIPs map[string]bool, out chan<- tapapi.Event) {
	send := func(ev tapapi.Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(err error) {
		s.cfg.Log.Info("tapping a pod failed", "pod", p.Namespace+"/"+p.Name, "err", err)
		send(tapapi.Event{ID: strconv.Itoa(i), Pod: p.Name, Namespace: p.Namespace, Time: time.Now(), Error: fmt.Sprintf("pod %s/%s: %v", p.Namespace, p.Name, err)})
	}
	addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(s.cfg.ProxyPort))
	if s.cfg.ProxyAddr != nil {
		addr = s.cfg.ProxyAddr(p)
	}
	client, closeConn, err := tap.Dial(addr, s.cfg.Identity.ClientConfig(s.proxyID(p)))
	if err != nil {
		fail(err)
		return
	}
	defer closeConn()
	stream, err := client.Watch(ctx, req)
	if err != nil {
		fail(err)
		return
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		if toIPs != nil && (ev.Direction != "outbound" || !toIPs[hostOf(ev.Destination)]) {
			continue
		}
		if !send(convert(i, p, ev)) {
			return
		}
	}
}

func convert(i int, p *corev1.Pod, ev *tapv1.Event) tapapi.Event {
	out := tapapi.Event{ID: fmt.Sprintf("%d:%d", i, ev.Id), Pod: p.Name, Namespace: p.Namespace, Direction: strings.ToUpper(ev.Direction),
		Source: ev.Source, Destination: ev.Destination, TLS: ev.Tls, ClientID: ev.ClientId, ServerID: ev.ServerId,
		Time: time.Unix(0, ev.TimeUnixNano)}
	switch k := ev.Kind.(type) {
	case *tapv1.Event_RequestInit:
		r := k.RequestInit
		out.RequestInit = &tapapi.RequestInit{Method: r.Method, Scheme: r.Scheme, Authority: r.Authority, Path: r.Path, HeaderNames: r.HeaderNames}
	case *tapv1.Event_ResponseInit:
		r := k.ResponseInit
		out.ResponseIn = &tapapi.ResponseInit{HTTPStatus: int(r.HttpStatus), SinceRequestInit: time.Duration(r.SinceRequestInitNs), HeaderNames: r.HeaderNames}
	case *tapv1.Event_ResponseEnd:
		r := k.ResponseEnd
		out.ResponseEnd = &tapapi.ResponseEnd{SinceRequestInit: time.Duration(r.SinceRequestInitNs), SinceResponseInit: time.Duration(r.SinceResponseInitNs),
			ResponseBytes: r.ResponseBytes, Error: r.Error}
		if r.HasGrpcStatus {
			g := r.GrpcStatus
			out.ResponseEnd.GRPCStatus = &g
		}
	}
	return out
}
