package trace

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher is a SpanProcessor with a bounded queue: OnEnd never blocks and
// never grows memory past QueueSize spans; a full queue drops the span
// (counted), and a batch the collector does not take within
// ExportTimeout is dropped too (counted), so a collector that is down
// costs the proxy a fixed amount of memory and nothing else.
type batcher struct {
	exp      sdktrace.SpanExporter
	log      *slog.Logger
	queue    chan sdktrace.ReadOnlySpan
	batch    int
	interval time.Duration
	timeout  time.Duration
	m        *Metrics

	closed atomic.Bool
	flush  chan chan struct{}
	stop   chan struct{} // closed by Shutdown; the queue itself is never closed (OnEnd may race)
	done   chan struct{}
	once   sync.Once
}

func newBatcher(exp sdktrace.SpanExporter, log *slog.Logger, queue, batch int, interval, timeout time.Duration, m *Metrics) *batcher {
	b := &batcher{exp: exp, log: log, queue: make(chan sdktrace.ReadOnlySpan, queue), batch: batch,
		interval: interval, timeout: timeout, m: m, flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if b.closed.Load() {
		return
	}
	select {
	case b.queue <- s:
	default:
		b.m.dropped.WithLabelValues("queue_full").Inc()
	}
}

func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	buf := make([]sdktrace.ReadOnlySpan, 0, b.batch)
	export := func() {
		if len(buf) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.exp.ExportSpans(ctx, buf)
		cancel()
		if err != nil {
			b.m.dropped.WithLabelValues("export_failed").Add(float64(len(buf)))
			b.log.Debug("trace export failed; spans dropped", "spans", len(buf), "err", err)
		} else {
			b.m.exported.Add(float64(len(buf)))
		}
		clear(buf) // let the spans go
		buf = buf[:0]
	}
	for {
		select {
		case <-b.stop:
			for n := len(b.queue); n > 0; n-- {
				buf = append(buf, <-b.queue)
				if len(buf) >= b.batch {
					export()
				}
			}
			export()
			return
		case s := <-b.queue:
			buf = append(buf, s)
			if len(buf) >= b.batch {
				export()
			}
		case <-t.C:
			export()
		case ack := <-b.flush:
			for n := len(b.queue); n > 0; n-- {
				buf = append(buf, <-b.queue)
				if len(buf) >= b.batch {
					export()
				}
			}
			export()
			close(ack)
		}
	}
}

func (b *batcher) ForceFlush(ctx context.Context) error {
	if b.closed.Load() {
		return nil
	}
	ack := make(chan struct{})
	select {
	case b.flush <- ack:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued (within ctx) and closes the exporter.
func (b *batcher) Shutdown(ctx context.Context) error {
	var err error
	b.once.Do(func() {
		b.closed.Store(true)
		close(b.stop)
		select {
		case <-b.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		err = errors.Join(err, b.exp.Shutdown(ctx))
	})
	return err
}

// Metrics count what became of the proxy's spans.
type Metrics struct {
	dropped  *prometheus.CounterVec
	exported prometheus.Counter
}

// NewMetrics returns the tracing counters, unregistered.
func NewMetrics(constLabels prometheus.Labels) *Metrics {
	return &Metrics{
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trace_spans_dropped_total",
			Help:        "Spans the proxy recorded but did not deliver: reason queue_full (the export queue was full) or export_failed (the collector did not take the batch).",
			ConstLabels: constLabels}, []string{"reason"}),
		exported: prometheus.NewCounter(prometheus.CounterOpts{Name: "trace_spans_exported_total",
			Help: "Spans delivered to the trace collector.", ConstLabels: constLabels}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.dropped, m.exported}
}
