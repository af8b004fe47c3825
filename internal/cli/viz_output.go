package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/weftmesh/weft/internal/viz/metricsapi"
)

// writeStat prints stat rows with Linkerd viz's columns: NAME, MESHED,
// SUCCESS, RPS, LATENCY_P50/P95/P99, TCP_CONN (NAMESPACE first with
// --all-namespaces); wide adds the requests counted and the share over mTLS.
func writeStat(w io.Writer, resp *metricsapi.StatResponse, req metricsapi.StatRequest, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	if len(resp.Rows) == 0 {
		_, err := fmt.Fprintln(w, "No traffic found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	cols := []string{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"}
	withNS := req.AllNamespaces && req.Kind != metricsapi.KindNamespace
	if withNS {
		cols = append([]string{"NAMESPACE"}, cols...)
	}
	if output == "wide" {
		cols = append(cols, "REQUESTS", "MTLS")
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range resp.Rows {
		f := []string{r.Name, meshed(r), pct(r.SuccessRate), num(r.RPS, "%.1frps"), num(r.LatencyP50Ms, "%.0fms"),
			num(r.LatencyP95Ms, "%.0fms"), num(r.LatencyP99Ms, "%.0fms"), num(r.TCPConnections, "%.0f")}
		if withNS {
			f = append([]string{r.Namespace}, f...)
		}
		if output == "wide" {
			var mtls *float64
			if r.Requests > 0 {
				m := r.SecuredRequests / r.Requests
				mtls = &m
			}
			f = append(f, fmt.Sprintf("%.0f", r.Requests), pct(mtls))
		}
		fmt.Fprintln(tw, strings.Join(f, "\t"))
	}
	return tw.Flush()
}

func meshed(r metricsapi.StatRow) string {
	switch {
	case r.MeshedPods < 0:
		return "-"
	case r.TotalPods < 0:
		return fmt.Sprintf("%d", r.MeshedPods)
	}
	return fmt.Sprintf("%d/%d", r.MeshedPods, r.TotalPods)
}

func pct(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *f*100)
}

func num(f *float64, format string) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf(format, *f)
}

// writeEdges prints edges with Linkerd viz's columns: SRC, DST, SRC_NS,
// DST_NS, SECURED; wide: SRC, DST, SRC_NS, DST_NS, CLIENT_ID, SERVER_ID, MSG.
func writeEdges(w io.Writer, resp *metricsapi.EdgesResponse, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	if len(resp.Edges) == 0 {
		_, err := fmt.Fprintln(w, "No edges found.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	if output == "wide" {
		fmt.Fprintln(tw, "SRC\tDST\tSRC_NS\tDST_NS\tCLIENT_ID\tSERVER_ID\tMSG")
	} else {
		fmt.Fprintln(tw, "SRC\tDST\tSRC_NS\tDST_NS\tSECURED")
	}
	for _, e := range resp.Edges {
		srcNS, dstNS := e.Src.Namespace, e.Dst.Namespace
		if srcNS == "" {
			srcNS, dstNS = e.Src.Name, e.Dst.Name
		}
		if output == "wide" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Src.Name, e.Dst.Name, srcNS, dstNS, dash(e.ClientID), dash(e.ServerID), dash(e.NoTLSReason))
			continue
		}
		secured := "√"
		if !e.Secured {
			secured = "×"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Src.Name, e.Dst.Name, srcNS, dstNS, secured)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
