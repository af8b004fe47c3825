package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/internal/compat"
	"github.com/weftmesh/weft/internal/viz/metricsapi"
	"github.com/weftmesh/weft/internal/viz/tapapi"
)

// tapFlags are the flags tap and top share (Linkerd's).
type tapFlags struct {
	namespace, toResource, toNamespace string
	method, path, authority, token     string
	tapAddr                            string
	maxRPS                             float64
}

func (t *tapFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&t.namespace, "namespace", "n", "default", "namespace of the tapped resource")
	f.StringVar(&t.toResource, "to", "", "only requests to this resource (kind/name)")
	f.StringVar(&t.toNamespace, "to-namespace", "", "the --to resource's namespace (default: --namespace)")
	f.StringVar(&t.method, "method", "", "only requests with this HTTP method")
	f.StringVar(&t.path, "path", "", "only requests whose path starts with this")
	f.StringVar(&t.authority, "authority", "", "only requests with this :authority")
	f.Float64Var(&t.maxRPS, "max-rps", 100, "the most requests per second to tap")
	f.StringVar(&t.token, "token", "", "bearer token the tap server authorizes (default: the kubeconfig user's token)")
	f.StringVar(&t.tapAddr, "tap-addr", "", "the tap server's address (host:port or URL), instead of reaching it through the Kubernetes API")
}

// watch resolves the resource argument and streams the tap.
func (t *tapFlags) watch(ctx context.Context, v *vizFlags, args []string, each func(tapapi.Event) bool) error {
	kind, name, err := metricsapi.ParseResource(args[0])
	if err != nil {
		return err
	}
	if len(args) == 2 {
		if name != "" {
			return fmt.Errorf("give the name once: %s or %s %s", args[0], strings.Split(args[0], "/")[0], args[1])
		}
		name = args[1]
	}
	if kind == metricsapi.KindNamespace && name == "" {
		name = t.namespace
	}
	if name == "" {
		return fmt.Errorf("%s: tap needs a resource name (kind/name)", args[0])
	}
	if t.toResource != "" {
		if _, _, err := metricsapi.ParseResource(t.toResource); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	c, err := t.client(v)
	if err != nil {
		return err
	}
	req := tapapi.Request{To: t.toResource, ToNamespace: t.toNamespace, Method: t.method, Path: t.path,
		Authority: t.authority, MaxRPS: t.maxRPS}
	ns := t.namespace
	if kind == metricsapi.KindNamespace {
		ns = name
	}
	return c.Watch(ctx, ns, tapapi.Plural(kind), name, req, each)
}

func (t *tapFlags) client(v *vizFlags) (*tapapi.Client, error) {
	if t.tapAddr != "" {
		base := t.tapAddr
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		return &tapapi.Client{Base: strings.TrimSuffix(base, "/"), Token: t.token}, nil
	}
	cfg, err := v.restConfig()
	if err != nil {
		return nil, err
	}
	token := t.token
	if token == "" {
		token = cfg.BearerToken
		if token == "" && cfg.BearerTokenFile != "" {
			b, err := os.ReadFile(cfg.BearerTokenFile)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig token file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
	}
	if token == "" {
		return nil, fmt.Errorf("tap needs a bearer token to authorize you: the kubeconfig user has none (client certificates cannot be forwarded by the API server); pass --token (e.g. --token $(kubectl create token <serviceaccount> -n <namespace>)) for an identity allowed to watch %s resources", compat.TapAPIGroup)
	}
	stream := rest.CopyConfig(cfg)
	stream.Timeout = 0 // the tap streams until interrupted
	hc, err := rest.HTTPClientFor(stream)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &tapapi.Client{
		Base:  fmt.Sprintf("%s/api/v1/namespaces/%s/services/%s:%d/proxy", strings.TrimSuffix(cfg.Host, "/"), v.vizNamespace, compat.VizTapName, compat.VizTapPort),
		HTTP:  hc,
		Token: token,
	}, nil
}

func newVizTapCommand(v *vizFlags) *cobra.Command {
	var (
		t      tapFlags
		output string
		max    int
	)
	cmd := &cobra.Command{
		Use:   "tap (RESOURCE/NAME | RESOURCE NAME)",
		Short: "Watch a resource's live requests and responses",
		Long: `Streams the requests the resource's meshed pods receive and send, as their proxies see
them: a req line when a request starts, rsp when its response starts, end when it ends (method,
authority, path, status, latency, size; header names but never their values, never bodies).
The tap server (weft-controller tap) authorizes your Kubernetes identity: you need verb watch on
<resource>/tap in API group tap.linkerd.io (the chart's linkerd-<viz namespace>-tap-admin
ClusterRole grants it). RESOURCE is namespace (ns), deployment (deploy), statefulset (sts),
daemonset (ds), job, pod (po) or service (svc).`,
		Example: "  weft viz tap deploy/web -n emojivoto\n  weft viz tap deploy/web --to deploy/api --path /api -o wide",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "wide" && output != "json" {
				return fmt.Errorf("--output %q: want wide or json (default: Linkerd's lines)", output)
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			n := 0
			var failed tapFailures
			ctx := cmd.Context()
			err := t.watch(ctx, v, args, func(ev tapapi.Event) bool {
				if ev.Error != "" {
					fmt.Fprintln(errOut, "tap:", ev.Error)
					failed.add(ev.Error)
					return true
				}
				failed.events++
				writeTapEvent(out, ev, output)
				if ev.ResponseEnd != nil {
					n++
				}
				return max <= 0 || n < max
			})
			if err != nil || (max > 0 && n >= max) || ctx.Err() != nil {
				return err
			}
			return failed.err()
		},
	}
	t.add(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "wide (adds the endpoints' identities) or json")
	cmd.Flags().IntVar(&max, "max-requests", 0, "stop after this many requests ended (0: until interrupted)")
	return cmd
}

func writeTapEvent(w io.Writer, ev tapapi.Event, output string) {
	switch output {
	case "json":
		b, _ := json.Marshal(ev)
		fmt.Fprintln(w, string(b))
	case "wide":
		line := ev.Line()
		if ev.ClientID != "" {
			line += " client_id=" + ev.ClientID
		}
		if ev.ServerID != "" {
			line += " server_id=" + ev.ServerID
		}
		fmt.Fprintf(w, "%s pod=%s ns=%s\n", line, ev.Pod, ev.Namespace)
	default:
		fmt.Fprintln(w, ev.Line())
	}
}

// topRow aggregates one (source, destination, method, path).
type topRow struct {
	source, destination, method, path string
	count, ok                         int
	best, worst, last                 time.Duration
}

type topTable struct {
	rows    map[[4]string]*topRow
	pending map[string][4]string // request id → key, until its response starts
	latency map[string]time.Duration
}

func newTopTable() *topTable {
	return &topTable{rows: map[[4]string]*topRow{}, pending: map[string][4]string{}, latency: map[string]time.Duration{}}
}

func hostPart(a string) string {
	if i := strings.LastIndexByte(a, ':'); i > 0 {
		return strings.Trim(a[:i], "[]")
	}
	return a
}

func (tt *topTable) add(ev tapapi.Event) {
	switch {
	case ev.RequestInit != nil:
		p := ev.RequestInit.Path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		tt.pending[ev.ID] = [4]string{hostPart(ev.Source), hostPart(ev.Destination), ev.RequestInit.Method, p}
	case ev.ResponseIn != nil:
		tt.latency[ev.ID] = ev.ResponseIn.SinceRequestInit
	case ev.ResponseEnd != nil:
		key, ok := tt.pending[ev.ID]
		if !ok {
			return
		}
		delete(tt.pending, ev.ID)
		lat, hadResponse := tt.latency[ev.ID]
		delete(tt.latency, ev.ID)
		if !hadResponse {
			lat = ev.ResponseEnd.SinceRequestInit
		}
		r := tt.rows[key]
		if r == nil {
			r = &topRow{source: key[0], destination: key[1], method: key[2], path: key[3], best: lat, worst: lat}
			tt.rows[key] = r
		}
		r.count++
		r.best, r.worst, r.last = min(r.best, lat), max(r.worst, lat), lat
		if success(ev) {
			r.ok++
		}
	}
}

// success is Linkerd's: no error, not a 5xx, and a gRPC status of OK if any.
func success(ev tapapi.Event) bool {
	e := ev.ResponseEnd
	if e.Error != "" {
		return false
	}
	if e.GRPCStatus != nil {
		return *e.GRPCStatus == 0
	}
	return true
}

func (tt *topTable) write(w io.Writer) {
	rows := make([]*topRow, 0, len(tt.rows))
	for _, r := range tt.rows {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].count != rows[j].count {
			return rows[i].count > rows[j].count
		}
		return rows[i].path < rows[j].path
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Source\tDestination\tMethod\tPath\tCount\tBest\tWorst\tLast\tSuccess Rate")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.2f%%\n", r.source, r.destination, r.method, r.path, r.count,
			fmtLatency(r.best), fmtLatency(r.worst), fmtLatency(r.last), 100*float64(r.ok)/float64(r.count))
	}
	tw.Flush()
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

func newVizTopCommand(v *vizFlags) *cobra.Command {
	var (
		t        tapFlags
		duration time.Duration
		refresh  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "top (RESOURCE/NAME | RESOURCE NAME)",
		Short: "The resource's live traffic, aggregated by source, destination, method and path",
		Long: `Taps the resource (see weft viz tap) and tabulates the requests by source, destination,
method and path: Count, Best, Worst and Last latency (to the response's start) and Success Rate,
Linkerd's columns. Without --duration the table is redrawn every --refresh until interrupted;
with it, printed once when the duration is over.`,
		Example: "  weft viz top deploy/web -n emojivoto\n  weft viz top deploy/web --duration 10s",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var cancel context.CancelFunc
			if duration > 0 {
				ctx, cancel = context.WithTimeout(ctx, duration)
			} else {
				ctx, cancel = context.WithCancel(ctx)
			}
			defer cancel()
			out := cmd.OutOrStdout()
			tt := newTopTable()
			var failed tapFailures
			events := make(chan tapapi.Event, 64)
			errc := make(chan error, 1)
			go func() {
				errc <- t.watch(ctx, v, args, func(ev tapapi.Event) bool {
					select {
					case events <- ev:
						return true
					case <-ctx.Done():
						return false
					}
				})
				close(events)
			}()
			tick := time.NewTicker(refresh)
			defer tick.Stop()
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						err := <-errc
						tt.write(out)
						if err != nil || ctx.Err() != nil {
							return err
						}
						return failed.err()
					}
					if ev.Error != "" {
						fmt.Fprintln(cmd.ErrOrStderr(), "tap:", ev.Error)
						failed.add(ev.Error)
						continue
					}
					failed.events++
					tt.add(ev)
				case <-tick.C:
					if duration <= 0 {
						fmt.Fprint(out, "\033[H\033[2J")
						tt.write(out)
					}
				}
			}
		},
	}
	t.add(cmd)
	cmd.Flags().DurationVar(&duration, "duration", 0, "tap this long, then print the table once and exit (0: until interrupted)")
	cmd.Flags().DurationVar(&refresh, "refresh", 2*time.Second, "how often the table is redrawn")
	return cmd
}

// tapFailures counts a tap's events and collects its pods' failures, to
// tell why the tap server ended the stream before the user did: it ends
// when every pod's tap has ended, which only a failure does.
type tapFailures struct {
	events int
	errs   []string
}

func (f *tapFailures) add(msg string) { f.errs = append(f.errs, msg) }

// err is the error of a stream the tap server ended: nil when no pod
// failed.
func (f *tapFailures) err() error {
	switch {
	case len(f.errs) == 0:
		return nil
	case f.events == 0:
		return fmt.Errorf("tap failed on every pod (%d): %s", len(f.errs), strings.Join(f.errs, "; "))
	default:
		return fmt.Errorf("tap ended after %d events: every pod's tap failed (%d): %s", f.events, len(f.errs), strings.Join(f.errs, "; "))
	}
}
