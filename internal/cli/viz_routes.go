package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// resourceQuery is what routes and authz share: RESOURCE[/NAME] (or
// RESOURCE NAME), -n, -o table|wide|json and -t.
type resourceQuery struct{ namespace, output, window string }

func (q *resourceQuery) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&q.namespace, "namespace", "n", "default", "namespace of the resource")
	f.StringVarP(&q.output, "output", "o", "table", "table, wide or json")
	f.StringVarP(&q.window, "time-window", "t", "1m", "the metrics' time window")
}

func (q *resourceQuery) request(args []string) (metricsapi.ResourceRequest, error) {
	kind, name, err := resourceArgs(args)
	if err != nil {
		return metricsapi.ResourceRequest{}, err
	}
	if err := checkOutput(q.output); err != nil {
		return metricsapi.ResourceRequest{}, err
	}
	r := metricsapi.ResourceRequest{Kind: kind, Namespace: q.namespace, Name: name}
	if r.Window, err = time.ParseDuration(q.window); err != nil {
		return r, fmt.Errorf("--time-window %q: %w", q.window, err)
	}
	return r, nil
}

func newVizRoutesCommand(v *vizFlags) *cobra.Command {
	var q resourceQuery
	cmd := &cobra.Command{
		Use:   "routes (RESOURCE/NAME | RESOURCE NAME)",
		Short: "Per-route metrics: success rate, requests per second and latency of each route",
		Long: `Shows, for each route, the success rate, requests per second and p50/p95/p99 latency over
the time window, from the proxies' outbound route metrics. For a workload (deploy, sts, ds,
job, po): the routes its proxies sent requests on, whatever Service they went to; for a
service (svc): the routes attached to it (HTTPRoute or GRPCRoute with the Service as parent),
whoever the client. Requests no route matched are on the [DEFAULT] route. A request is a
success when the proxy recorded no error and the status is not a 5xx (gRPC: OK).`,
		Example: "  weft viz routes svc/webapp -n booksapp\n  weft viz routes deploy/traffic -n booksapp -o wide",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := q.request(args)
			if err != nil {
				return err
			}
			c, err := v.client()
			if err != nil {
				return err
			}
			resp, err := c.Routes(cmd.Context(), req)
			if err != nil {
				return err
			}
			return writeRoutes(cmd.OutOrStdout(), resp, q.output)
		},
	}
	q.addFlags(cmd)
	return cmd
}

func newVizAuthzCommand(v *vizFlags) *cobra.Command {
	var q resourceQuery
	cmd := &cobra.Command{
		Use:   "authz (RESOURCE[/NAME] | RESOURCE NAME)",
		Short: "Inbound authorization decisions of a workload's proxies: what was allowed, by what, and what was denied",
		Long: `Shows, for each Server, route and authorization, the requests (HTTP) or connections (TCP)
per second a workload's proxies let in over the time window, and on the row without an
authorization the rate they denied (UNAUTHORIZED), from the proxies'
inbound_{http,tcp}_authz_{allow,deny}_total counters. The server default/<policy> (and its
authorization of the same name) is the default inbound policy of ports no Server selects.`,
		Example: "  weft viz authz deploy/web -n emojivoto\n  weft viz authz deploy -n emojivoto -o json",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := q.request(args)
			if err != nil {
				return err
			}
			c, err := v.client()
			if err != nil {
				return err
			}
			resp, err := c.Authz(cmd.Context(), req)
			if err != nil {
				return err
			}
			return writeAuthz(cmd.OutOrStdout(), resp, q.output)
		},
	}
	q.addFlags(cmd)
	return cmd
}

// resourceArgs parses "kind/name" or "kind name".
func resourceArgs(args []string) (metricsapi.Kind, string, error) {
	kind, name, err := metricsapi.ParseResource(args[0])
	if err != nil {
		return "", "", err
	}
	if len(args) == 2 {
		if name != "" {
			return "", "", fmt.Errorf("give the name once: %s or %s %s", args[0], strings.Split(args[0], "/")[0], args[1])
		}
		name = args[1]
	}
	return kind, name, nil
}

func checkOutput(output string) error {
	if output != "" && output != "json" && output != "wide" && output != "table" {
		return fmt.Errorf("--output %q: want table, wide or json", output)
	}
	return nil
}

// writeRoutes prints routes with Linkerd viz's columns: ROUTE, SERVICE,
// SUCCESS, RPS, LATENCY_P50/P95/P99; wide adds the parent's port, the
// route's kind and the requests counted.
func writeRoutes(w io.Writer, resp *metricsapi.RoutesResponse, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	if len(resp.Rows) == 0 {
		_, err := fmt.Fprintln(w, "No route traffic found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	cols := []string{"ROUTE", "SERVICE", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"}
	if output == "wide" {
		cols = append(cols, "PORT", "KIND", "REQUESTS")
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range resp.Rows {
		f := []string{r.Route, r.Parent, pct(r.SuccessRate), num(r.RPS, "%.1frps"), num(r.LatencyP50Ms, "%.0fms"),
			num(r.LatencyP95Ms, "%.0fms"), num(r.LatencyP99Ms, "%.0fms")}
		if output == "wide" {
			f = append(f, dash(r.ParentPort), dash(r.RouteKind), fmt.Sprintf("%.0f", r.Requests))
		}
		fmt.Fprintln(tw, strings.Join(f, "\t"))
	}
	return tw.Flush()
}

// writeAuthz prints authorization decisions: ROUTE, SERVER,
// AUTHORIZATION, UNAUTHORIZED, RPS (Linkerd viz's first columns); wide adds
// the protocol and the counts.
func writeAuthz(w io.Writer, resp *metricsapi.AuthzResponse, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	if len(resp.Rows) == 0 {
		_, err := fmt.Fprintln(w, "No authorization decisions found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	cols := []string{"ROUTE", "SERVER", "AUTHORIZATION", "UNAUTHORIZED", "RPS"}
	if output == "wide" {
		cols = append(cols, "PROTOCOL", "ALLOWED", "DENIED")
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range resp.Rows {
		unit := "rps"
		if r.Protocol == "tcp" {
			unit = "conn/s"
		}
		f := []string{dash(r.Route), dash(r.Server), dash(r.Authorization), fmt.Sprintf("%.1f%s", r.DeniedRPS, unit), fmt.Sprintf("%.1f%s", r.AllowedRPS, unit)}
		if output == "wide" {
			f = append(f, r.Protocol, fmt.Sprintf("%.0f", r.Allowed), fmt.Sprintf("%.0f", r.Denied))
		}
		fmt.Fprintln(tw, strings.Join(f, "\t"))
	}
	return tw.Flush()
}
