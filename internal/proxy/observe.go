package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/trace"
)

// setupObservers starts the tracer and the access log the Config asks for.
func (p *Proxy) setupObservers(logTo io.Writer, queue int) error {
	if p.cfg.Trace.Enabled() {
		m := trace.NewMetrics(p.cfg.MetricsLabels)
		for _, c := range m.Collectors() {
			if err := p.metrics.Register(c); err != nil {
				return err
			}
		}
		o := trace.Options{Log: p.log.With("component", "trace"), Metrics: m, Attributes: map[string]string{}}
		if p.id != nil {
			o.ClientTLS = func(id string) *tls.Config { return p.id.ClientConfig(id) }
		}
		if ns := p.cfg.MetricsLabels["namespace"]; ns != "" {
			o.Attributes["k8s.namespace.name"] = ns
		}
		if pod := p.cfg.MetricsLabels["pod"]; pod != "" {
			o.Attributes["k8s.pod.name"] = pod
		}
		t, err := trace.New(p.cfg.Trace, o)
		if err != nil {
			return err
		}
		p.tracer = t
	}
	if p.cfg.AccessLog != "" {
		if logTo == nil {
			logTo = os.Stderr
		}
		l, err := accesslog.New(p.cfg.AccessLog, logTo, queue, p.cfg.MetricsLabels)
		if err != nil {
			return err
		}
		for _, c := range l.Collectors() {
			if err := p.metrics.Register(c); err != nil {
				return err
			}
		}
		p.access = l
	}
	return nil
}

// closeObservers writes the queued log lines and exports the queued spans
// (for up to 2 s, even when the grace period is over).
func (p *Proxy) closeObservers() {
	p.access.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.tracer.Shutdown(ctx); err != nil {
		p.log.Debug("spans still queued at shutdown were dropped", "err", err)
	}
}

type spanKey struct{}

// observation is one request being traced and/or access-logged.
type observation struct {
	http.ResponseWriter
	status   int
	bytes    int64
	span     *trace.Span
	start    time.Time
	r        *http.Request
	body     *countingBody
	clientID string
	version  string // as the application sees it (l5d-orig-proto restored)
	logIt    bool
}

// observe starts what is recorded of r: a span when r carries a sampled
// trace context and tracing is on, an access log entry for inbound
// requests when the access log is on. With neither it returns w and r
// unchanged and a nil observation (whose done is a no-op).
func (p *Proxy) observe(w http.ResponseWriter, r *http.Request, info *connInfo) (http.ResponseWriter, *http.Request, *observation) {
	inbound := info.direction == compat.Inbound
	logIt := inbound && p.access != nil
	if p.tracer == nil && !logIt {
		return w, r, nil
	}
	span := p.tracer.Start(r, inbound, info.clientID)
	if span == nil && !logIt {
		return w, r, nil
	}
	o := &observation{ResponseWriter: w, span: span, start: time.Now(), clientID: info.clientID, logIt: logIt}
	if span != nil && !inbound {
		r = r.WithContext(context.WithValue(r.Context(), spanKey{}, span))
	}
	if logIt && r.Body != nil && r.Body != http.NoBody {
		o.body = &countingBody{ReadCloser: r.Body}
		r.Body = o.body
	}
	o.r, o.version = r, r.Proto
	if op := r.Header.Get(keyOrigProto); op != "" && inbound {
		o.version = op
	}
	return o, r, o
}

// spanOf is the outbound span of a request (nil when it has none).
func (p *Proxy) spanOf(ctx context.Context) *trace.Span {
	if p.tracer == nil {
		return nil
	}
	s, _ := ctx.Value(spanKey{}).(*trace.Span)
	return s
}

func (o *observation) WriteHeader(code int) {
	if o.status == 0 && code >= 200 {
		o.status = code
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *observation) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.status = http.StatusOK
	}
	n, err := o.ResponseWriter.Write(b)
	o.bytes += int64(n)
	return n, err
}

func (o *observation) Flush() { http.NewResponseController(o.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the connection (hijack for upgrades).
func (o *observation) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// done ends the span and logs the request.
func (p *Proxy) done(o *observation) {
	if o == nil {
		return
	}
	status := o.status
	if status == 0 {
		status = http.StatusOK // a handler that wrote nothing answered 200
	}
	o.span.End(status)
	if !o.logIt {
		return
	}
	r := o.r
	e := accesslog.Entry{Time: o.start, ClientAddr: r.RemoteAddr, ClientID: o.clientID, Method: r.Method,
		URI: r.RequestURI, Host: r.Host, Version: o.version, Status: status, ResponseBytes: o.bytes,
		Duration: time.Since(o.start), UserAgent: r.UserAgent(), Referer: r.Referer(), TraceID: o.span.TraceID()}
	if e.TraceID == "" {
		if in, ok := trace.Extract(r.Header); ok {
			e.TraceID = in.Parent.TraceID().String()
		}
	}
	if o.body != nil {
		e.RequestBytes = o.body.n
	}
	p.access.Log(e)
}

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += int64(n)
	return n, err
}
