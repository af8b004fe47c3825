package local

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/demo"
	"github.com/weftmesh/weft/internal/proctest"
)

// TestDemo runs `weft demo --for 20s` as a user would, in explicit mode
// and, as root, in transparent mode, and checks what it shows against the
// proxies' own metrics.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries for 20s")
	}
	bin := proctest.Build(t, "../..", "./cmd/weft", "./cmd/weft-proxy", "./cmd/weft-controller")
	t.Run("explicit", func(t *testing.T) { runDemo(t, bin, "explicit") })
	t.Run("output closed", func(t *testing.T) { demoOutputClosed(t, bin) })
	t.Run("transparent", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root for network namespaces and iptables")
		}
		for _, tool := range []string{"ip", "iptables-legacy-restore", "setpriv"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s not installed", tool)
			}
		}
		runDemo(t, bin, "transparent")
		if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "weft-demo-") {
			t.Errorf("network namespaces left behind:\n%s", out)
		}
	})
}

// startDemo starts weft demo with args, its output to be read from out;
// it is killed at cleanup if still running.
func startDemo(t *testing.T, bin string, args ...string) (*exec.Cmd, io.ReadCloser, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(bin+"/weft", append([]string{"demo"}, args...)...)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out, stderr
}

func runDemo(t *testing.T, bin, mode string) {
	cmd, out, stderr := startDemo(t, bin, "--mode", mode, "--for", "20s", "--interval", "2s", "--rate", "50", "-o", "json")

	var started, final *demo.Event
	checkedMid := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e demo.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON event: %q: %v", sc.Text(), err)
		}
		switch {
		case e.Event == "started":
			started = &e
			if len(e.Processes) != 14 {
				t.Errorf("%d processes started, want 14 (2 controllers, 6 apps, 6 proxies)", len(e.Processes))
			}
			for _, p := range e.Processes {
				if err := syscall.Kill(p.PID, 0); err != nil {
					t.Errorf("%s (pid %d) not running: %v", p.Name, p.PID, err)
				}
			}
		case e.Event == "frame" && !e.Frame.Final && !checkedMid && e.Frame.Elapsed > 6:
			checkedMid = true
			checkAgainstMetrics(t, e.Frame, started)
		case e.Event == "frame" && e.Frame.Final:
			final = &e
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("weft demo: %v\n%s", err, stderr.String())
	}
	if started == nil || final == nil || !checkedMid {
		t.Fatalf("missing events: started %v, mid-run frame %v, final frame %v\n%s", started != nil, checkedMid, final != nil, stderr.String())
	}
	checkFinal(t, final.Frame)

	// Nothing left behind.
	for _, p := range started.Processes {
		if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still running after the demo ended", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(started.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is still there (%v)", started.Dir, err)
	}
}

// checkAgainstMetrics scrapes every proxy right after a frame: each
// service's totals in the view can only have grown since, by at most a
// couple of seconds of traffic; and every request between services is mTLS
// between the expected identities.
func checkAgainstMetrics(t *testing.T, f *demo.Frame, started *demo.Event) {
	t.Helper()
	admins := map[string][]string{} // service → its proxies' admin addresses
	for _, p := range started.Processes {
		if name, ok := strings.CutSuffix(p.Name, "-proxy"); ok {
			svc := name[:strings.LastIndex(name, "-")]
			admins[svc] = append(admins[svc], p.Admin)
		}
	}
	for _, s := range f.Services {
		dir := `direction="` + s.Side + `"`
		var requests, successes float64
		for _, a := range admins[s.Name] {
			requests += metric(t, a, "request_total", dir)
			successes += metric(t, a, "response_total", dir, `classification="success"`)
		}
		if requests < s.Requests || requests > s.Requests+150 {
			t.Errorf("%s: the view shows %v requests, the proxies then had %v", s.Name, s.Requests, requests)
		}
		if successes < s.Successes || successes > s.Successes+150 {
			t.Errorf("%s: the view shows %v successes, the proxies then had %v", s.Name, s.Successes, successes)
		}
		if s.Ready != s.Replicas {
			t.Errorf("%s: %d of %d proxies ready", s.Name, s.Ready, s.Replicas)
		}
	}
	id := func(sa string) string { return sa + ".emojivoto.serviceaccount.identity.linkerd.cluster.local" }
	for _, e := range [][2]string{{"vote-bot", "web"}, {"web", "emoji"}, {"web", "voting"}} {
		var plain, mtls float64
		for _, a := range admins[e[1]] {
			plain += metric(t, a, "request_total", `direction="inbound"`, `tls="false"`)
			mtls += metric(t, a, "request_total", `direction="inbound"`, `tls="true"`, `client_id="`+id(e[0])+`"`)
		}
		if mtls == 0 || plain != 0 {
			t.Errorf("%s → %s: %v requests over mTLS from %s, %v in plaintext", e[0], e[1], mtls, id(e[0]), plain)
		}
		var client float64
		for _, a := range admins[e[0]] {
			client += metric(t, a, "response_total", `direction="outbound"`, `tls="true"`, `server_id="`+id(e[1])+`"`)
		}
		if client == 0 {
			t.Errorf("%s → %s: the client's proxy saw no mTLS responses from %s", e[0], e[1], id(e[1]))
		}
	}
}

func checkFinal(t *testing.T, f *demo.Frame) {
	t.Helper()
	by := map[string]demo.ServiceStats{}
	for _, s := range f.Services {
		by[s.Name] = s
	}
	bot := by["vote-bot"]
	if bot.Requests < 20*50*0.6 {
		t.Errorf("vote-bot sent %v requests in 20s at 50/s", bot.Requests)
	}
	// Traffic has stopped: every bot request reached web, and each web
	// request called emoji once and voting once plus the retries of its
	// failed votes (the registry marks GET /vote retryable).
	for _, name := range []string{"web", "emoji"} {
		if got := by[name].Requests; got != bot.Requests {
			t.Errorf("%s served %v requests, the bot sent %v", name, got, bot.Requests)
		}
	}
	v := by["voting"]
	if v.Retries == 0 || v.Requests != bot.Requests+v.Retries {
		t.Errorf("voting served %v requests with %v retries by web's proxy; want the bot's %v plus the retries, and some retries",
			v.Requests, v.Retries, bot.Requests)
	}
	for _, name := range []string{"vote-bot", "web", "emoji"} {
		if s := by[name]; s.Successes != s.Responses || s.Responses == 0 {
			t.Errorf("%s: %v of %v responses successful, want all", name, s.Successes, s.Responses)
		}
	}
	if v := by["voting"]; v.Successes >= v.Responses || v.Successes < v.Responses/2 {
		t.Errorf("voting: %v of %v successful, want about 90%%", v.Successes, v.Responses)
	}
	edges := map[string]demo.EdgeStats{}
	for _, e := range f.Edges {
		edges[e.Src+"→"+e.Dst] = e
	}
	for _, pair := range [][2]string{{"vote-bot", "web"}, {"web", "emoji"}, {"web", "voting"}} {
		e, ok := edges[pair[0]+"→"+pair[1]]
		want := fmt.Sprintf("%s.emojivoto.serviceaccount.identity.linkerd.cluster.local", pair[0])
		if !ok || !e.MTLS || e.ClientID != want || !strings.HasPrefix(e.ServerID, pair[1]+".emojivoto.") {
			t.Errorf("edge %s → %s: %+v, want mTLS from %s", pair[0], pair[1], e, want)
		}
	}
	var slow, fast float64
	for _, r := range f.Replicas {
		if r.Service == "emoji" {
			if r.Slow {
				slow = r.Requests
			} else {
				fast += r.Requests / 2
			}
		}
	}
	if slow >= fast/4 {
		t.Errorf("the slow emoji replica served %v requests, the fast ones %v each on average: want far fewer", slow, fast)
	}
	if f.Elapsed < 19 || f.Elapsed > 40 {
		t.Errorf("the final frame came at %.1fs, want about 20s", f.Elapsed)
	}
}

// demoOutputClosed: `weft demo | head -1`: once its output is closed the
// demo stops at its next refresh, and stops everything it started.
func demoOutputClosed(t *testing.T, bin string) {
	cmd, out, stderr := startDemo(t, bin, "--mode", "explicit", "--for", "60s", "--interval", "1s", "-o", "json")
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("reading the first event: %v\n%s", err, stderr.String())
	}
	var started demo.Event
	if err := json.Unmarshal(line, &started); err != nil || started.Event != "started" {
		t.Fatalf("first event %q (%v), want started", line, err)
	}
	out.Close() // what head does after its line
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("weft demo: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("weft demo still running 30s after its output was closed\n%s", stderr.String())
	}
	for _, p := range started.Processes {
		if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still running after the demo ended", p.Name, p.PID)
		}
	}
	if _, err := os.Stat(started.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is still there (%v)", started.Dir, err)
	}
}
