package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNamesLabelsAndBuckets(t *testing.T) {
	r := New(Options{ConstLabels: map[string]string{"namespace": "emojivoto", "pod": "web-1"}})
	tgt := Target{Direction: "outbound", Authority: "web.emojivoto.svc.cluster.local:80", Addr: "198.18.0.5:8080", TLS: "disabled",
		Dst: DstOf(map[string]string{"dst_namespace": "emojivoto", "dst_deployment": "web", "dst_pod": "web-5d8f", "not_a_dst_label": "x"})}
	s := r.HTTP(tgt)
	s.Request()
	s.Response(200, "", true, 7*time.Millisecond)
	s.Response(503, "", false, 1500*time.Millisecond)
	tcp := r.TCP(tgt, "dst")
	tcp.Open()
	tcp.Close(time.Second, 10, 20, "ECONNRESET")

	want := `
# HELP request_total Total count of HTTP requests.
# TYPE request_total counter
request_total{authority="web.emojivoto.svc.cluster.local:80",client_id="",direction="outbound",dst_cronjob="",dst_daemonset="",dst_deployment="web",dst_job="",dst_namespace="emojivoto",dst_pod="web-5d8f",dst_pod_template_hash="",dst_replicaset="",dst_replicationcontroller="",dst_service="",dst_serviceaccount="",dst_statefulset="",dst_zone="",namespace="emojivoto",no_tls_reason="",pod="web-1",server_id="",target_addr="198.18.0.5:8080",tls="disabled"} 1
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), "request_total"); err != nil {
		t.Error(err)
	}
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		if mf.GetName() == "response_latency_ms" {
			h := mf.GetMetric()[0].GetHistogram()
			if got := len(h.GetBucket()); got != 25 {
				t.Errorf("response_latency_ms has %d buckets, want Linkerd's 25", got)
			}
		}
		if mf.GetName() == "response_total" {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				wantClass := map[string]string{"200": "success", "503": "failure"}[labels["status_code"]]
				if labels["classification"] != wantClass {
					t.Errorf("status %s classified %s, want %s", labels["status_code"], labels["classification"], wantClass)
				}
			}
		}
	}
	for _, name := range []string{"request_total", "response_total", "response_latency_ms", "tcp_open_total",
		"tcp_close_total", "tcp_open_connections", "tcp_read_bytes_total", "tcp_write_bytes_total",
		"tcp_connection_duration_ms", "proxy_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !found[name] {
			t.Errorf("metric %s not exported", name)
		}
	}
}

func TestIdleSeriesExpire(t *testing.T) {
	clock := time.Unix(1000, 0)
	r := New(Options{IdleTimeout: time.Minute})
	r.now = func() time.Time { return clock }
	old := r.HTTP(Target{Direction: "outbound", Authority: "old:80"})
	old.Request()
	old.Response(200, "", true, time.Millisecond)
	live := r.TCP(Target{Direction: "inbound", Addr: "127.0.0.1:80"}, "src")
	live.Open() // still open: must survive expiry

	clock = clock.Add(2 * time.Minute)
	fresh := r.HTTP(Target{Direction: "outbound", Authority: "fresh:80"})
	fresh.Request()

	if n := r.Expire(); n != 1 {
		t.Errorf("Expire removed %d label sets, want 1", n)
	}
	if got := testutil.CollectAndCount(r.requests); got != 1 {
		t.Errorf("request_total series = %d, want 1 (only fresh)", got)
	}
	if got := testutil.CollectAndCount(r.responses); got != 0 {
		t.Errorf("response_total series = %d, want 0", got)
	}
	if h, tcp := r.SeriesCount(); h != 1 || tcp != 1 {
		t.Errorf("cached sets = %d http, %d tcp; want 1, 1", h, tcp)
	}
	live.Close(time.Second, 0, 0, "")
	clock = clock.Add(2 * time.Minute)
	r.Expire()
	if h, tcp := r.SeriesCount(); h != 0 || tcp != 0 {
		t.Errorf("after all idle: %d http, %d tcp cached; want 0, 0", h, tcp)
	}
}
