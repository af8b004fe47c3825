package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// render writes a frame as tables, like `linkerd viz stat` and `edges`.
func render(w io.Writer, f Frame, live bool) {
	var b strings.Builder
	if live {
		b.WriteString("\033[H\033[2J")
	}
	state := "Ctrl-C stops it"
	if f.Final {
		state = "final, traffic stopped"
	}
	fmt.Fprintf(&b, "weft demo — namespace %s — %.0fs (%s)\n\n", Namespace, f.Elapsed, state)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SERVICE\tMESHED\tSUCCESS\tRPS\tRETRIES/S\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99\tREQUESTS\t")
	for _, s := range f.Services {
		success := "-"
		if s.Window > 0 {
			success = fmt.Sprintf("%.2f%%", 100*s.SuccessRate)
		}
		name := s.Name
		if s.Side == "outbound" {
			name += " (sent)"
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%.0f\t\n", name, s.Ready, s.Replicas, success, s.RPS, s.RetryRate,
			formatMs(s.P50), formatMs(s.P95), formatMs(s.P99), s.Requests)
	}
	tw.Flush()
	b.WriteString("\nload balancing (peak-EWMA: slow replicas get less):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "REPLICA\tRPS\tLATENCY_P50\tREQUESTS\tADMIN\t")
	for _, r := range f.Replicas {
		name := r.Name
		if r.Slow {
			name += " (slow)"
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.0f\t%s\t\n", name, r.RPS, formatMs(r.P50), r.Requests, r.Admin)
	}
	tw.Flush()
	b.WriteString("\nedges (identities as each side's proxy verified them):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SRC\tDST\tSECURED\tCLIENT_ID\tSERVER_ID\tREQUESTS")
	for _, e := range f.Edges {
		secured := "×"
		if e.MTLS {
			secured = "√"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\n", e.Src, e.Dst, secured, orDash(e.ClientID), orDash(e.ServerID), e.Requests)
	}
	tw.Flush()
	b.WriteString("\n")
	io.WriteString(w, b.String())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
