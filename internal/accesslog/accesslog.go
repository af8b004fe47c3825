// Package accesslog writes the proxy's HTTP access log (Linkerd's
// config.linkerd.io/access-log): one line per inbound request, in the
// Apache combined log format or as a JSON object with Linkerd's field
// names, on the proxy's stderr beside (and told apart from) its own logs.
// Writing is asynchronous through a bounded queue: a flood of requests or
// a stalled stderr never blocks the proxy; lines that do not fit are
// dropped and counted.
package accesslog

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/internal/compat"
)

// Formats.
const (
	FormatApache = compat.AccessLogApache
	FormatJSON   = compat.AccessLogJSON
)

// Entry is one request.
type Entry struct {
	Time          time.Time // when the request arrived
	ClientAddr    string
	ClientID      string // the mTLS client's identity, "" when none
	Method        string
	URI           string
	Host          string
	Version       string // "HTTP/1.1"
	Status        int
	RequestBytes  int64
	ResponseBytes int64
	Duration      time.Duration // to the end of the response
	UserAgent     string
	Referer       string
	TraceID       string // the request's trace id, "" when it carries none
}

// Logger queues entries for a single writer goroutine.
type Logger struct {
	format  string
	w       io.Writer
	queue   chan Entry
	dropped prometheus.Counter
	written prometheus.Counter
	stop    chan struct{} // closed by Close; the queue is never closed (Log may race)
	done    chan struct{}
	once    sync.Once
}

// New starts a logger writing format lines to w; queue bounds the lines
// waiting to be written.
func New(format string, w io.Writer, queue int, constLabels prometheus.Labels) (*Logger, error) {
	if err := Validate(format); err != nil {
		return nil, err
	}
	if queue <= 0 {
		queue = 4096
	}
	l := &Logger{format: format, w: w, queue: make(chan Entry, queue), stop: make(chan struct{}), done: make(chan struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "access_log_dropped_total",
			Help: "Access log lines dropped because the log queue was full.", ConstLabels: constLabels}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "access_log_written_total",
			Help: "Access log lines written.", ConstLabels: constLabels}),
	}
	go l.run()
	return l, nil
}

// Validate checks a format name.
func Validate(format string) error {
	if format != FormatApache && format != FormatJSON {
		return fmt.Errorf("access log format %q: want %s or %s", format, FormatApache, FormatJSON)
	}
	return nil
}

// Collectors are the logger's metrics.
func (l *Logger) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.dropped, l.written}
}

// Log queues e, or drops it (counted) when the queue is full. A nil
// Logger logs nothing.
func (l *Logger) Log(e Entry) {
	if l == nil {
		return
	}
	select {
	case l.queue <- e:
	default:
		l.dropped.Inc()
	}
}

// Close writes what is queued and stops the writer, waiting at most a
// second for a slow destination.
func (l *Logger) Close() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		close(l.stop)
		select {
		case <-l.done:
		case <-time.After(time.Second):
		}
	})
}

func (l *Logger) run() {
	defer close(l.done)
	var buf []byte
	for {
		var e Entry
		select {
		case e = <-l.queue:
		case <-l.stop:
			select {
			case e = <-l.queue: // what is left, then stop
			default:
				return
			}
		}
		buf = buf[:0]
		if l.format == FormatJSON {
			buf = AppendJSON(buf, e)
		} else {
			buf = AppendApache(buf, e)
		}
		buf = append(buf, '\n')
		if _, err := l.w.Write(buf); err == nil {
			l.written.Inc()
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// AppendApache formats e in the Apache combined log format:
// %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i", where %u is the
// client's mesh identity.
func AppendApache(b []byte, e Entry) []byte {
	host := e.ClientAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = strings.Trim(host[:i], "[]")
	}
	b = append(b, dash(host)...)
	b = append(b, " - "...)
	b = append(b, dash(e.ClientID)...)
	b = append(b, " ["...)
	b = e.Time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = append(b, e.Method...)
	b = append(b, ' ')
	b = append(b, quoteSafe(e.URI)...)
	b = append(b, ' ')
	b = append(b, e.Version...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, ' ')
	if e.ResponseBytes > 0 {
		b = strconv.AppendInt(b, e.ResponseBytes, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, " \""...)
	b = append(b, quoteSafe(dash(e.Referer))...)
	b = append(b, "\" \""...)
	b = append(b, quoteSafe(dash(e.UserAgent))...)
	return append(b, '"')
}

// quoteSafe escapes what would break a quoted field or the line.
func quoteSafe(s string) string {
	if !strings.ContainsAny(s, "\"\\\n\r") {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// jsonEntry has Linkerd's JSON access log field names.
type jsonEntry struct {
	ClientAddr    string `json:"client.addr"`
	ClientID      string `json:"client.id"`
	Host          string `json:"host"`
	Method        string `json:"method"`
	ProcessingNs  string `json:"processing_ns"`
	RequestBytes  string `json:"request_bytes"`
	ResponseBytes string `json:"response_bytes"`
	Status        int    `json:"status"`
	Timestamp     string `json:"timestamp"`
	TotalNs       string `json:"total_ns"`
	TraceID       string `json:"trace_id"`
	URI           string `json:"uri"`
	UserAgent     string `json:"user_agent"`
	Version       string `json:"version"`
}

// AppendJSON formats e as one JSON object.
func AppendJSON(b []byte, e Entry) []byte {
	ns := strconv.FormatInt(e.Duration.Nanoseconds(), 10)
	out, err := json.Marshal(jsonEntry{
		ClientAddr: e.ClientAddr, ClientID: dash(e.ClientID), Host: e.Host, Method: e.Method,
		ProcessingNs: ns, RequestBytes: strconv.FormatInt(e.RequestBytes, 10),
		ResponseBytes: strconv.FormatInt(e.ResponseBytes, 10), Status: e.Status,
		Timestamp: e.Time.UTC().Format(time.RFC3339Nano), TotalNs: ns, TraceID: e.TraceID,
		URI: e.URI, UserAgent: e.UserAgent, Version: e.Version,
	})
	if err != nil { // strings and ints only: cannot happen
		return append(b, `{}`...)
	}
	return append(b, out...)
}
