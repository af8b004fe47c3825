package tap

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	tapv1 "github.com/weftmesh/weft/api/tap/v1"
)

// Meta is what the proxy knows of a request's connection.
type Meta struct {
	Inbound     bool
	Source      string // the client's ip:port
	Destination string // inbound: the local address; outbound: the logical target until Endpoint names the endpoint
	TLS         bool
	ClientID    string // inbound: the verified client identity
}

// observation is one tapped request, seen by one or more watches.
type observation struct {
	t        *Tap
	meta     Meta
	serverID string
	watches  []*watch
	ids      []uint64
	start    time.Time
	init     *tapv1.RequestInit

	mu        sync.Mutex
	initSent  bool
	respStart time.Time
	status    int
	bytes     uint64
}

type obsKey struct{}

// Begin observes a request when an open watch matches it: it returns the
// writer and request to use instead (the request's context carries the
// observation for Endpoint) and the function to call when the handler
// returns. Callers check Active first; Begin on a request no watch wants
// returns w and r unchanged.
func (t *Tap) Begin(w http.ResponseWriter, r *http.Request, m Meta) (http.ResponseWriter, *http.Request, func()) {
	now := time.Now()
	var o *observation
	for _, wt := range *t.watches.Load() {
		if !wt.matches(r, &m) || !wt.limit.allow(now) {
			continue
		}
		if o == nil {
			o = &observation{t: t, meta: m, start: now}
		}
		o.watches = append(o.watches, wt)
		o.ids = append(o.ids, wt.nextID.Add(1))
	}
	if o == nil {
		return w, r, func() {}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	o.init = &tapv1.RequestInit{Method: r.Method, Scheme: scheme, Authority: r.Host, Path: r.URL.RequestURI(),
		HeaderNames: headerNames(r.Header)}
	if m.Inbound {
		o.sendInit()
	} else {
		r = r.WithContext(context.WithValue(r.Context(), obsKey{}, o))
	}
	rec := &recorder{ResponseWriter: w, o: o}
	return rec, r, func() { o.end(rec) }
}

// Endpoint names the endpoint an outbound request is sent to (and the
// identity it must present, "" when the endpoint is not meshed); the first
// call sends the request's init event. Retries do not send another.
func Endpoint(ctx context.Context, addr, serverID string) {
	o, _ := ctx.Value(obsKey{}).(*observation)
	if o == nil {
		return
	}
	o.mu.Lock()
	if !o.initSent {
		o.meta.Destination = addr
		o.meta.TLS = serverID != ""
		o.serverID = serverID
	}
	o.mu.Unlock()
	o.sendInit()
}

func (o *observation) event(i int, now time.Time) *tapv1.Event {
	return &tapv1.Event{Id: o.ids[i], Direction: direction(o.meta.Inbound), Source: o.meta.Source,
		Destination: o.meta.Destination, Tls: o.meta.TLS, ClientId: o.meta.ClientID, ServerId: o.serverID,
		TimeUnixNano: now.UnixNano()}
}

func direction(inbound bool) string {
	if inbound {
		return "inbound"
	}
	return "outbound"
}

func (o *observation) sendInit() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.initSent {
		return
	}
	o.initSent = true
	now := time.Now()
	for i, w := range o.watches {
		ev := o.event(i, now)
		ev.Kind = &tapv1.Event_RequestInit{RequestInit: o.init}
		o.t.send(w, ev)
	}
}

func (o *observation) responseInit(status int, h http.Header) {
	o.mu.Lock()
	o.respStart, o.status = time.Now(), status
	o.mu.Unlock()
	o.sendInit() // an outbound request answered by the proxy itself
	names := headerNames(h)
	for i, w := range o.watches {
		ev := o.event(i, o.respStart)
		ev.Kind = &tapv1.Event_ResponseInit{ResponseInit: &tapv1.ResponseInit{HttpStatus: uint32(status),
			SinceRequestInitNs: int64(o.respStart.Sub(o.start)), HeaderNames: names}}
		o.t.send(w, ev)
	}
}

func (o *observation) end(rec *recorder) {
	o.sendInit()
	now := time.Now()
	end := &tapv1.ResponseEnd{SinceRequestInitNs: int64(now.Sub(o.start))}
	o.mu.Lock()
	end.ResponseBytes = o.bytes
	if o.status == 0 {
		end.Error = "no response"
	} else {
		end.SinceResponseInitNs = int64(now.Sub(o.respStart))
	}
	o.mu.Unlock()
	if rec.started {
		h := rec.Header()
		gs := h.Get(http.TrailerPrefix + "Grpc-Status")
		if gs == "" {
			gs = h.Get("Grpc-Status")
		}
		if code, ok := parseGRPCStatus(gs); ok {
			end.HasGrpcStatus, end.GrpcStatus = true, code
		}
	}
	for i, w := range o.watches {
		ev := o.event(i, now)
		ev.Kind = &tapv1.Event_ResponseEnd{ResponseEnd: end}
		o.t.send(w, ev)
	}
}

func parseGRPCStatus(s string) (uint32, bool) {
	if s == "" || len(s) > 3 {
		return 0, false
	}
	var n uint32
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint32(c-'0')
	}
	return n, true
}

// headerNames lists h's names, lower-cased and sorted; never the values.
func headerNames(h http.Header) []string {
	out := make([]string, 0, len(h))
	for k := range h {
		if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			continue
		}
		out = append(out, lower(k))
	}
	sort.Strings(out)
	return out
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// recorder sees the response's status and size as the handler writes it.
type recorder struct {
	http.ResponseWriter
	o       *observation
	started bool
}

func (rw *recorder) WriteHeader(code int) {
	if !rw.started && (code >= 200 || code == http.StatusSwitchingProtocols) {
		rw.started = true
		rw.o.responseInit(code, rw.Header())
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if !rw.started {
		rw.started = true
		rw.o.responseInit(http.StatusOK, rw.Header())
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.o.mu.Lock()
	rw.o.bytes += uint64(n)
	rw.o.mu.Unlock()
	return n, err
}

// Flush sends the response's head if not yet sent, like the server does.
func (rw *recorder) Flush() {
	if !rw.started {
		rw.started = true
		rw.o.responseInit(http.StatusOK, rw.Header())
	}
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach Hijack and deadlines.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
