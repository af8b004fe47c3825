package local

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/promtext"
)

// build compiles the named commands once per test binary run.
func build(t *testing.T, cmds ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"build", "-o", dir + "/"}, cmds...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a process, logs its output to the test on failure, and stops it
// by pid with SIGTERM (then SIGKILL) at cleanup.
func start(t *testing.T, name string, env []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logFile := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s (pid %d) did not exit within 10s of SIGTERM", name, cmd.Process.Pid)
		}
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("--- %s log:\n%s", name, b)
		}
	})
	return cmd
}

// readyWithin polls url until it answers 200 or d passes.
func readyWithin(url string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
	}
	return false
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 20s (last: %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func metric(t *testing.T, adminAddr, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	v, err := promtext.Sum(string(b), name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBinariesMeshWithMTLS(t *testing.T) {
	m := newMesh(t)
	bAdmin, bIn := m.startProxy(t, "api", nil, "--inbound-forward", m.app)
	aBind := freeAddr(t)
	aAdmin, _ := m.startProxy(t, "web", nil, "--dst", "api.shop:80=weft://"+apiID+"@"+bIn, "--bind", aBind+"=api.shop:80")
	waitReady(t, "http://"+bAdmin+"/ready")
	waitReady(t, "http://"+aAdmin+"/ready")
	checkMTLS(t, aBind, aAdmin, bAdmin, apiID, m.now)
}

// checkMTLS sends 20 requests to bind and checks both proxies saw them as
// mTLS between web and api.
func checkMTLS(t *testing.T, aBind, aAdmin, bAdmin, apiID string, now time.Time) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 20 {
		resp, err := client.Post("http://"+aBind+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello web.shop.serviceaccount.identity.linkerd.cluster.local"; string(b) != want {
			t.Fatalf("request %d: %q, want %q", i, b, want)
		}
	}
	if got := metric(t, aAdmin, "response_total", `tls="true"`, `server_id="`+apiID+`"`, `classification="success"`); got != 20 {
		t.Errorf("web proxy: %v mTLS responses, want 20", got)
	}
	if got := metric(t, bAdmin, "request_total", `direction="inbound"`, `tls="true"`, `client_id="web.shop.serviceaccount.identity.linkerd.cluster.local"`); got != 20 {
		t.Errorf("api proxy: %v mTLS requests from web, want 20", got)
	}
	if exp := metric(t, aAdmin, "identity_cert_expiration_timestamp_seconds"); exp < float64(now.Add(11*time.Hour).Unix()) {
		t.Errorf("certificate expires at %v, want about 12h from now (capped by the issuer)", time.Unix(int64(exp), 0))
	}
}
